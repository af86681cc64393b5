import { apply, next } from "./machine.ts";
import { createSearch } from "./state.ts";
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
 * steps the same `next`/`apply` through BullMQ jobs instead of this loop.
 */
export async function runSearch(params: SearchParamsInput, executor: SearchExecutor): Promise<SearchResult> {
  let state = createSearch(params);
  for (;;) {
    const work = next(state);
    if (work.kind === "done") return work.result;
    let results: (GenerateResult | JudgeResult | VerifyResult)[];
    if (work.kind === "generate") results = await executor.generate(work.requests);
    else if (work.kind === "judge") results = await executor.judge(work.requests);
    else if (executor.verify !== undefined) results = await executor.verify(work.requests);
    else throw new SearchError(state.params.itemId, "the search asks a verifier for scores, and this executor has none");
    state = apply(state, results);
  }
}
