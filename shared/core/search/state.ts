/**
 * The search as a value. It is plain JSON so that the fleet driver can keep it in BullMQ job
 * data between step runs and the in-process driver can hold it in a variable: same logic,
 * same answer.
 */
import { z } from "zod";
import { SearchError } from "./errors.ts";
import { parseSearchParams, SearchParamsSchema, type SearchParamsInput } from "./params.ts";
import { firstStep, PoolEntrySchema, StepPlanSchema, type StepPlan } from "./strategies.ts";
import { BracketSchema } from "./tournament.ts";
import {
  CandidateTraceSchema,
  CheckTraceSchema,
  CountsSchema,
  PopulationSchema,
  ScoreTraceSchema,
  StepTraceSchema,
  VoteTraceSchema,
} from "./types.ts";

/**
 * 2: steps continue several base texts, and pick by verifier scores or votes as well as by the judge.
 * 3: equal texts are judged once (`sameAs`, the bracket's `same`, `params.merge`); candidates
 * equal to an earlier one may be sampled again (`resampled`, `replaced`).
 */
export const STATE_VERSION = 3;

export const StepStateSchema = z.object({
  plan: StepPlanSchema,
  /** What the step waits for: candidates, reasoning checks, the verdicts of a tournament round, or verifier scores. */
  phase: z.enum(["generate", "check", "compare", "verify"]),
  /** The texts the candidates continue, `plan.candidates` each, in order (the accepted text alone, but for swires). */
  bases: z.array(z.string()).min(1),
  candidates: z.array(CandidateTraceSchema),
  /** Resample rounds done, and the samples they replaced (params.resample). */
  resampled: z.number().int().nonnegative(),
  replaced: z.array(CandidateTraceSchema),
  /** Each candidate's first equal (merge.ts), once the candidates are in. */
  sameAs: z.array(z.number().int().nonnegative()),
  checks: z.array(CheckTraceSchema),
  scores: z.array(ScoreTraceSchema),
  votes: z.array(VoteTraceSchema),
  bracket: BracketSchema.nullable(),
  /** The population the verifier that scored this step reported (VerifyResult.population), if any. */
  population: PopulationSchema.nullable(),
  /** Every candidate best first, once a verifier or a vote has decided; null while undecided or under a tournament. */
  ranking: z.array(z.number().int().nonnegative()).nullable(),
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
  /** Candidates a strategy keeps across steps (swires' reasonings); empty for the others. */
  pool: z.array(PoolEntrySchema),
  counts: CountsSchema,
});
export type SearchState = z.infer<typeof SearchStateSchema>;

export function freshStep(plan: StepPlan, bases: string[]): StepState {
  return {
    plan,
    phase: "generate",
    bases,
    candidates: [],
    resampled: 0,
    replaced: [],
    sameAs: [],
    checks: [],
    scores: [],
    votes: [],
    bracket: null,
    ranking: null,
    population: null,
  };
}

export function createSearch(input: SearchParamsInput): SearchState {
  const params = parseSearchParams(input);
  return {
    version: STATE_VERSION,
    params,
    prefix: "",
    flawed: false,
    steps: [],
    current: freshStep(firstStep(params), [""]),
    pool: [],
    counts: { candidates: 0, distinct: 0, comparisons: 0, checks: 0, verifications: 0, saved: 0, generatedTokens: 0 },
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
