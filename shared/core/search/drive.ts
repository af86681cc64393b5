import { apply, next } from "./machine.ts";
import { createSearch } from "./state.ts";
import type { SearchParamsInput } from "./params.ts";
import type { GenerateRequest, GenerateResult, JudgeRequest, JudgeResult, SearchResult } from "./types.ts";

/** Whatever can carry out a search's work: the in-process engine, or a test script. */
export interface SearchExecutor {
  generate(requests: GenerateRequest[]): Promise<GenerateResult[]>;
  judge(requests: JudgeRequest[]): Promise<JudgeResult[]>;
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
    const results = work.kind === "generate" ? await executor.generate(work.requests) : await executor.judge(work.requests);
    state = apply(state, results);
  }
}
