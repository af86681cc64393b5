/**
 * A child job's stretch of an item's search: from the state its parent saved, the same machine
 * on the same executor as the in-process driver (`advance`), work after work, while the work
 * stays within the search step the stretch started in and needs the model the stretch started
 * on. The parent applies the state it returns, with a timing per work, as if each work had been
 * a child of its own, so the trace is the one it always was.
 *
 * Stopping at the step's end keeps the parent's step trace and a retry's lost work to one step;
 * stopping where the other model is needed (a verifier's scores among a policy's candidates)
 * keeps the policy and the verifier on their own workers, scaling apart.
 */
import { advance, type PendingWork, type SearchExecutor, type SearchState } from "../../../shared/core/search/index.ts";
import type { WorkTiming } from "../protocol/index.ts";

/** The model a work needs: the verifier scores candidates, the policy does the rest. */
export const modelOf = (kind: PendingWork["kind"]): "policy" | "verifier" => (kind === "verify" ? "verifier" : "policy");

/** Whether a stretch that started at `start` with `first` goes on with `work`, to be run on `state`. */
export function stretchGoesOn(start: SearchState, first: PendingWork, work: PendingWork, state: SearchState): boolean {
  return state.steps.length === start.steps.length && modelOf(work.kind) === modelOf(first.kind);
}

export interface Stretch {
  state: SearchState;
  /** One timing a work run, in order. */
  work: WorkTiming[];
}

/** Runs the stretch that starts at `start` (whose next work is `first`) on `executor`. */
export async function runStretch(
  start: SearchState,
  first: PendingWork,
  executor: SearchExecutor,
  worker: string,
  now: () => number = Date.now,
): Promise<Stretch> {
  const work: WorkTiming[] = [];
  const timed =
    <Q extends { id: string }, R>(kind: PendingWork["kind"], run: (requests: Q[]) => Promise<R[]>) =>
    async (requests: Q[]): Promise<R[]> => {
      const startedAt = now();
      const results = await run(requests);
      if (requests.length > 0) {
        work.push({
          id: requests[0]!.id,
          kind,
          requests: requests.length,
          worker,
          startedAt,
          ms: Math.max(0, now() - startedAt),
        });
      }
      return results;
    };
  const verify = executor.verify;
  const timedExecutor: SearchExecutor = {
    generate: timed("generate", (r) => executor.generate(r)),
    judge: timed("judge", (r) => executor.judge(r)),
    ...(verify !== undefined ? { verify: timed("verify", (r) => verify(r)) } : {}),
  };
  const state = await advance(start, timedExecutor, (w, s) => stretchGoesOn(start, first, w, s));
  return { state, work };
}
