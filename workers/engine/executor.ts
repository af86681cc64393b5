/**
 * The one adapter from the engine to a search's executor (`SearchExecutor`,
 * shared/core/search/drive.ts): an item opened on the policy, and on a verifier when the search
 * asks for one, whose work is answered over those item contexts. `ask` and `eval` run searches
 * on it in this process; the fleet worker's hosts answer jobs with it.
 */
import type { SearchExecutor } from "../../shared/core/search/drive.ts";
import type { VerifyRequest, VerifyResult } from "../../shared/core/search/types.ts";
import type { Engine, OpenItemInput } from "./engine.ts";
import type { Verifier } from "./verifier.ts";

/** An item opened for a search; `close` releases what the engine (and the verifier) hold for it. */
export interface ItemExecutor extends SearchExecutor {
  close(): void;
}

/** An item opened on a verifier alone (under the verifier's own prompt). */
export interface VerifierItem {
  verify(requests: VerifyRequest[]): Promise<VerifyResult[]>;
  close(): void;
}

export async function openVerifierItem(verifier: Verifier, input: OpenItemInput): Promise<VerifierItem> {
  const ctx = await verifier.openItem(input);
  return {
    verify: (requests) => verifier.verify(ctx, requests),
    close: () => verifier.closeItem(ctx),
  };
}

/**
 * Opens the item on the policy (and on `verifier`, when given). The search's judge mode needs no
 * opening: each judge request names its judge.
 */
export async function openItemExecutor(
  engine: Engine,
  input: OpenItemInput,
  verifier: Verifier | null = null,
): Promise<ItemExecutor> {
  const ctx = await engine.openItem(input);
  let checker: VerifierItem | null = null;
  try {
    checker = verifier === null ? null : await openVerifierItem(verifier, input);
  } catch (err) {
    engine.closeItem(ctx);
    throw err;
  }
  return {
    generate: (requests) => engine.generate(ctx, requests),
    judge: (requests) => engine.judge(ctx, requests),
    ...(checker !== null ? { verify: checker.verify } : {}),
    close: () => {
      engine.closeItem(ctx);
      checker?.close();
    },
  };
}
