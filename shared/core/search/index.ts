/** The search state machine: pure, JSON state, driven by `next` / `apply`. */
export { createSearch, parseSearchState, SearchStateSchema, STATE_VERSION } from "./state.ts";
export type { SearchState, StepState } from "./state.ts";
export { next, apply, resultOf } from "./machine.ts";
export { advance, runSearch, type PendingWork, type SearchExecutor } from "./drive.ts";
export { SearchError } from "./errors.ts";
export {
  SearchParamsSchema,
  parseSearchParams,
  DEFAULT_MAX_STAGE_TOKENS,
  DEFAULT_MAX_SENTENCE_STEPS,
  DEFAULT_SWIRES,
  SwiresParamsSchema,
} from "./params.ts";
export type { SearchParams, SearchParamsInput, SwiresParams } from "./params.ts";
export { sentenceEnd } from "../protocol/sentences.ts";
export { candidateId, compareId, checkId, verifyId, sampleKey, ITEM_ID_PATTERN } from "./ids.ts";
export * from "./types.ts";
