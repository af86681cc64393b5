import { apply, next, resultOf } from "./machine.ts";
import { createSearch, type SearchState } from "./state.ts";
import { SearchError } from "./errors.ts";
import type { SearchParamsInput } from "./params.ts";
import type {
  GenerateRequest,
  GenerateResult,
  JudgeRequest,
  JudgeResult,
  SearchResult,
  VerifyRequest,
  VerifyResult,
  Work,
} from "./types.ts";

/** Whatever can carry out a search's work: the in-process engine, or a test script. */
export interface SearchExecutor {
  generate(requests: GenerateRequest[]): Promise<GenerateResult[]>;
  judge(requests: JudgeRequest[]): Promise<JudgeResult[]>;
  /** Pointwise scores from a verifier; only searches under judge mode `verifier` and swires ask for them. */
  verify?(requests: VerifyRequest[]): Promise<VerifyResult[]>;
}

/**
 * The in-process driver: runs one item's search to the end on an executor. The fleet driver
 * steps the same machine through BullMQ jobs, each child job a stretch of it (`advance`).
 */
export async function runSearch(params: SearchParamsInput, executor: SearchExecutor): Promise<SearchResult> {
  const end = advance(createSearch(params), executor, () => true);
  return resultOf(await end);
}

/** The work a search waits for, when it is not done. */
export type PendingWork = Exclude<Work, { kind: "done" }>;

/**
 * Runs the search from `state` on an executor while `goOn` allows the next work (asked before
 * each, with the state it would run on), and returns the state it stopped at: done, or before
 * the first work `goOn` refused.
 */
export async function advance(
  state: SearchState,
  executor: SearchExecutor,
  goOn: (work: PendingWork, state: SearchState) => boolean,
): Promise<SearchState> {
  for (;;) {
    const work = next(state);
    if (work.kind === "done" || !goOn(work, state)) return state;
    state = apply(state, await runWork(work, executor, state));
  }
}

async function runWork(
  work: PendingWork,
  executor: SearchExecutor,
  state: SearchState,
): Promise<(GenerateResult | JudgeResult | VerifyResult)[]> {
  if (work.kind === "generate") return executor.generate(work.requests);
  if (work.kind === "judge") return executor.judge(work.requests);
  if (executor.verify !== undefined) return executor.verify(work.requests);
  throw new SearchError(state.params.itemId, "the search asks a verifier for scores, and this executor has none");
}
