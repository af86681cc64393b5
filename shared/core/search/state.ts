/**
 * The search as a value. It is plain JSON so that the fleet driver can keep it in BullMQ job
 * data between step runs and the in-process driver can hold it in a variable: same logic,
 * same answer.
 */
import { z } from "zod";
import { SearchError } from "./errors.ts";
import { parseSearchParams, SearchParamsSchema, type SearchParamsInput } from "./params.ts";
import { firstStep, StepPlanSchema, type StepPlan } from "./strategies.ts";
import { BracketSchema } from "./tournament.ts";
import { CandidateTraceSchema, CheckTraceSchema, CountsSchema, StepTraceSchema } from "./types.ts";

export const STATE_VERSION = 1;

export const StepStateSchema = z.object({
  plan: StepPlanSchema,
  /** What the step waits for: candidates, reasoning checks, or the verdicts of a tournament round. */
  phase: z.enum(["generate", "check", "compare"]),
  candidates: z.array(CandidateTraceSchema),
  checks: z.array(CheckTraceSchema),
  bracket: BracketSchema.nullable(),
});
export type StepState = z.infer<typeof StepStateSchema>;

export const SearchStateSchema = z.object({
  version: z.literal(STATE_VERSION),
  params: SearchParamsSchema,
  /** Assistant text accepted so far: the concatenated winners. */
  prefix: z.string(),
  /** Some accepted winner was truncated or malformed, so the result cannot be well formed. */
  flawed: z.boolean(),
  steps: z.array(StepTraceSchema),
  /** null once the search is done. */
  current: StepStateSchema.nullable(),
  counts: CountsSchema,
});
export type SearchState = z.infer<typeof SearchStateSchema>;

export function freshStep(plan: StepPlan): StepState {
  return { plan, phase: "generate", candidates: [], checks: [], bracket: null };
}

export function createSearch(input: SearchParamsInput): SearchState {
  const params = parseSearchParams(input);
  return {
    version: STATE_VERSION,
    params,
    prefix: "",
    flawed: false,
    steps: [],
    current: freshStep(firstStep(params)),
    counts: { candidates: 0, comparisons: 0, checks: 0, generatedTokens: 0 },
  };
}

/** For a state read back from job data or a file: validates it before the machine trusts it. */
export function parseSearchState(input: unknown): SearchState {
  const r = SearchStateSchema.safeParse(input);
  if (r.success) return r.data;
  const itemId = (input as { params?: { itemId?: unknown } } | null)?.params?.itemId;
  throw new SearchError(
    typeof itemId === "string" ? itemId : null,
    `invalid search state: ${z.prettifyError(r.error).replaceAll("\n", " ")}`,
  );
}
