/**
 * Work items, results, traces and the final result of a search, as zod schemas with their
 * inferred types. Everything here crosses a process boundary (BullMQ job data, S3 result
 * files), so each value is plain JSON: no undefined fields, no class instances.
 */
import { z } from "zod";
import { STAGES } from "../protocol/stages.ts";

export const STRATEGIES = ["none", "best-of-n", "sentence", "stage"] as const;
export type Strategy = (typeof STRATEGIES)[number];

export const StageSchema = z.enum(STAGES);

/** Raw judge text, scores or anything else a judge wants kept; it only goes into the trace. */
export const DetailSchema = z.json();
export type Detail = z.infer<typeof DetailSchema>;

export const StopSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("stage"), stage: StageSchema }),
  z.object({ kind: z.literal("sentence") }),
  z.object({ kind: z.literal("end") }),
]);
export type Stop = z.infer<typeof StopSchema>;

/** Child job ids in BullMQ: letters, digits, `_`, `-`, and `:` as the separator. */
export const WorkIdSchema = z.string().regex(/^[A-Za-z0-9:_-]+$/);

export const GenerateRequestSchema = z.object({
  id: WorkIdSchema,
  /** Assistant text accepted so far; the engine continues the cached image+question prompt with it. */
  prefix: z.string(),
  stop: StopSchema,
  maxTokens: z.number().int().positive(),
  /** The engine derives the candidate's random stream from this alone, so batching and worker placement do not matter. */
  sampleKey: z.string(),
});
export type GenerateRequest = z.infer<typeof GenerateRequestSchema>;

export const COMPARE_TEMPLATES = [...STAGES, "all", "sentence"] as const;
export const CompareTemplateSchema = z.enum(COMPARE_TEMPLATES);
export type CompareTemplate = z.infer<typeof CompareTemplateSchema>;

export const CompareRequestSchema = z.object({
  id: WorkIdSchema,
  kind: z.literal("compare"),
  template: CompareTemplateSchema,
  hint: z.string(),
  first: z.string(),
  second: z.string(),
});
export const CheckRequestSchema = z.object({
  id: WorkIdSchema,
  kind: z.literal("check"),
  template: z.literal("reasoning_check"),
  hint: z.string(),
  candidate: z.string(),
});
export const JudgeRequestSchema = z.discriminatedUnion("kind", [CompareRequestSchema, CheckRequestSchema]);
export type CompareRequest = z.infer<typeof CompareRequestSchema>;
export type CheckRequest = z.infer<typeof CheckRequestSchema>;
export type JudgeRequest = z.infer<typeof JudgeRequestSchema>;

export const GenerateResultSchema = z.object({
  id: z.string(),
  /** The continuation only (not the prefix), including the stop tag when one was hit. */
  text: z.string(),
  tokens: z.number().int().nonnegative(),
  /** Hit maxTokens before the stop condition. */
  truncated: z.boolean(),
  /** The engine produced its end-of-sequence token. */
  finished: z.boolean().optional(),
  detail: DetailSchema.optional(),
});
export type GenerateResult = z.infer<typeof GenerateResultSchema>;

export const CompareResultSchema = z.object({
  id: z.string(),
  verdict: z.union([z.literal(1), z.literal(2)]),
  detail: DetailSchema.optional(),
});
export const CheckResultSchema = z.object({
  id: z.string(),
  verdict: z.enum(["correct", "incorrect"]),
  detail: DetailSchema.optional(),
});
export const JudgeResultSchema = z.union([CompareResultSchema, CheckResultSchema]);
export type CompareResult = z.infer<typeof CompareResultSchema>;
export type CheckResult = z.infer<typeof CheckResultSchema>;
export type JudgeResult = z.infer<typeof JudgeResultSchema>;

export const WorkResultSchema = z.union([GenerateResultSchema, CompareResultSchema, CheckResultSchema]);
export type WorkResult = z.infer<typeof WorkResultSchema>;

/** Why a candidate cannot be accepted as it is; it loses to a flawless one without a comparison. */
export const DefectSchema = z.enum(["truncated", "malformed"]);
export type Defect = z.infer<typeof DefectSchema>;

export const CandidateTraceSchema = z.object({
  id: z.string(),
  sampleKey: z.string(),
  text: z.string(),
  tokens: z.number().int().nonnegative(),
  truncated: z.boolean(),
  finished: z.boolean(),
  defect: DefectSchema.nullable(),
  detail: DetailSchema.nullable(),
});
export type CandidateTrace = z.infer<typeof CandidateTraceSchema>;

export const CheckTraceSchema = z.object({
  id: z.string(),
  candidate: z.number().int().nonnegative(),
  verdict: z.enum(["correct", "incorrect"]),
  detail: DetailSchema.nullable(),
});
export type CheckTrace = z.infer<typeof CheckTraceSchema>;

/**
 * One match of the knock-out. `first`/`second` are candidate indices; `verdict` says which
 * of them won, whether a judge said so (`reason: 'judge'`) or a defect decided it.
 */
export const ComparisonTraceSchema = z.object({
  id: z.string().nullable(),
  round: z.number().int().nonnegative(),
  first: z.number().int().nonnegative(),
  second: z.number().int().nonnegative(),
  verdict: z.union([z.literal(1), z.literal(2)]),
  winner: z.number().int().nonnegative(),
  reason: z.enum(["judge", "truncated", "malformed"]),
  detail: DetailSchema.nullable(),
});
export type ComparisonTrace = z.infer<typeof ComparisonTraceSchema>;

export const StepTraceSchema = z.object({
  /** Stage name, `sentence 3` or `answer`. */
  label: z.string(),
  candidates: z.array(CandidateTraceSchema),
  checks: z.array(CheckTraceSchema),
  /** Candidate indices that entered the tournament (all, unless the REASONING check dropped some). */
  entrants: z.array(z.number().int().nonnegative()),
  comparisons: z.array(ComparisonTraceSchema),
  winner: z.number().int().nonnegative(),
});
export type StepTrace = z.infer<typeof StepTraceSchema>;

export const CountsSchema = z.object({
  candidates: z.number().int().nonnegative(),
  /** Judge calls only; walkovers against defective candidates cost nothing and are not counted. */
  comparisons: z.number().int().nonnegative(),
  checks: z.number().int().nonnegative(),
  generatedTokens: z.number().int().nonnegative(),
});
export type Counts = z.infer<typeof CountsSchema>;

export const SearchResultSchema = z.object({
  /** The full assistant text. */
  text: z.string(),
  stages: z.partialRecord(StageSchema, z.string()),
  answer: z.string().nullable(),
  /** The text parses as a well-formed structured answer and no accepted piece was truncated or malformed. */
  wellFormed: z.boolean(),
  steps: z.array(StepTraceSchema),
  counts: CountsSchema,
});
export type SearchResult = z.infer<typeof SearchResultSchema>;

/** What a driver must do next: run these generations, run these judgements, or store the result. */
export const WorkSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("generate"), requests: z.array(GenerateRequestSchema) }),
  z.object({ kind: z.literal("judge"), requests: z.array(JudgeRequestSchema) }),
  z.object({ kind: z.literal("done"), result: SearchResultSchema }),
]);
export type Work = z.infer<typeof WorkSchema>;
