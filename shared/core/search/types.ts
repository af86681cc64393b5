/**
 * Work items, results, traces and the final result of a search, as zod schemas with their
 * inferred types. Everything here crosses a process boundary (BullMQ job data, S3 result
 * files), so each value is plain JSON: no undefined fields, no class instances.
 */
import { z } from "zod";
import { STAGES } from "../protocol/stages.ts";

export const STRATEGIES = ["none", "best-of-n", "sentence", "stage", "greedy", "vote", "vote-weighted", "swires"] as const;
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

/** Child job ids in BullMQ: an item key's characters (shared/core/ids.ts), and `:` as the separator. */
export const WorkIdSchema = z.string().regex(/^[A-Za-z0-9:_~-]+$/);

export const GenerateRequestSchema = z.object({
  id: WorkIdSchema,
  /** Assistant text accepted so far; the engine continues the cached image+question prompt with it. */
  prefix: z.string(),
  stop: StopSchema,
  maxTokens: z.number().int().positive(),
  /** The engine derives the candidate's random stream from this alone, so batching and worker placement do not matter. */
  sampleKey: z.string(),
  /** Take the most likely token at every step instead of sampling (the `greedy` strategy). */
  greedy: z.literal(true).optional(),
  /** Report the continuation's log-probability (`logProb`), which votes weigh and break ties by. */
  logProb: z.literal(true).optional(),
  /** The sampling temperature and nucleus mass: the run's for this stage (stageTemperature), else the item's own (SearchParams); absent, the model's. */
  temperature: z.number().min(0).optional(),
  topP: z.number().gt(0).max(1).optional(),
});
export type GenerateRequest = z.infer<typeof GenerateRequestSchema>;

export const COMPARE_TEMPLATES = [...STAGES, "all", "sentence"] as const;
export const CompareTemplateSchema = z.enum(COMPARE_TEMPLATES);
export type CompareTemplate = z.infer<typeof CompareTemplateSchema>;

/**
 * The pairwise judges (the paper's self-judge): `score` reads the choice's logits in one forward
 * pass, `generate` samples the reference's verdict and parses it. `score` is the default.
 */
export const PAIRWISE_JUDGE_MODES = ["score", "generate"] as const;
export type PairwiseJudgeMode = (typeof PAIRWISE_JUDGE_MODES)[number];
export const DEFAULT_PAIRWISE_JUDGE: PairwiseJudgeMode = "score";
/** Which pairwise judge answers a judge request: the search's (its `judge` parameter); absent, whoever is asked decides. */
const JudgeModeField = z.enum(PAIRWISE_JUDGE_MODES).optional();

export const CompareRequestSchema = z.object({
  id: WorkIdSchema,
  kind: z.literal("compare"),
  template: CompareTemplateSchema,
  hint: z.string(),
  first: z.string(),
  second: z.string(),
  mode: JudgeModeField,
});
export const CheckRequestSchema = z.object({
  id: WorkIdSchema,
  kind: z.literal("check"),
  template: z.literal("reasoning_check"),
  hint: z.string(),
  candidate: z.string(),
  mode: JudgeModeField,
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
  /** Sum of the model's log-probabilities of the kept tokens (softmax at temperature 1), when the request asked for it. */
  logProb: z.number().optional(),
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

/**
 * A pointwise verification: the verifier reads the item's image and question, the accepted text
 * `prefix` and the candidate, cut into steps by the verifier's rule for `stage` (null: a whole
 * answer or a sentence, the rule's default).
 */
export const VerifyRequestSchema = z.object({
  id: WorkIdSchema,
  prefix: z.string(),
  candidate: z.string(),
  stage: StageSchema.nullable(),
});
export type VerifyRequest = z.infer<typeof VerifyRequestSchema>;

const Probability = z.number().min(0).max(1);

/** A verifier's population of scores: mean and population standard deviation. */
export const PopulationSchema = z.strictObject({ mean: z.number(), sd: z.number().min(0) });
export type Population = z.infer<typeof PopulationSchema>;

export const VerifyResultSchema = z.object({
  id: z.string(),
  /** The pooled score in [0, 1]; higher is better. */
  score: Probability,
  /** Each step's score, in order. */
  steps: z.array(Probability),
  /**
   * The verifier's own population of reasoning scores (its verifier.json `calibration`), when it
   * has one: swires' retrace cutoff (swires.ts), reported by the verifier that scored.
   */
  population: PopulationSchema.optional(),
  detail: DetailSchema.optional(),
});
export type VerifyResult = z.infer<typeof VerifyResultSchema>;

export const WorkResultSchema = z.union([GenerateResultSchema, CompareResultSchema, CheckResultSchema, VerifyResultSchema]);
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
  /** GenerateResult.logProb, when the executor reported it. */
  logProb: z.number().nullable(),
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

export const ScoreTraceSchema = z.object({
  id: z.string(),
  candidate: z.number().int().nonnegative(),
  score: Probability,
  steps: z.array(Probability),
  detail: DetailSchema.nullable(),
});
export type ScoreTrace = z.infer<typeof ScoreTraceSchema>;

/** One answer of a vote: who voted for it and with what weight (1 a vote, or the candidate's certainty). */
export const VoteTraceSchema = z.object({
  answer: z.string(),
  candidates: z.array(z.number().int().nonnegative()),
  weight: z.number(),
  /** Mean over its voters of their mean token log-probability: the tie-break. */
  meanLogProb: z.number().nullable(),
});
export type VoteTrace = z.infer<typeof VoteTraceSchema>;

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
  /** `equal`: two copies of one text, no judge; `repeat`: the verdict of the judged match `id` for the same two texts. */
  reason: z.enum(["judge", "truncated", "malformed", "equal", "repeat"]),
  detail: DetailSchema.nullable(),
});
export type ComparisonTrace = z.infer<typeof ComparisonTraceSchema>;

export const StepTraceSchema = z.object({
  /** Stage name, `sentence 3` or `answer`. */
  label: z.string(),
  candidates: z.array(CandidateTraceSchema),
  /** Samples that a resample replaced because they equalled an earlier candidate (params.resample), in the order drawn. */
  replaced: z.array(CandidateTraceSchema).default([]),
  /**
   * Each candidate's first equal in this step (its own index for the first of a text): checks,
   * scores and comparisons were asked of the first only (merge.ts). Empty when merging was off.
   */
  sameAs: z.array(z.number().int().nonnegative()).default([]),
  /** One per candidate; a merged candidate's names the check of its first equal. */
  checks: z.array(CheckTraceSchema),
  /** Candidate indices that entered the tournament (all, unless the REASONING check dropped some). */
  entrants: z.array(z.number().int().nonnegative()),
  comparisons: z.array(ComparisonTraceSchema),
  /** Verifier scores of the candidates (verifier steps); a merged candidate's names the verification of its first equal. */
  scores: z.array(ScoreTraceSchema).default([]),
  /** The answers voted for, the winning one first (vote steps). */
  votes: z.array(VoteTraceSchema).default([]),
  /** Every candidate, best first, where a verifier ranked them all; a vote's winner alone; empty after a tournament. */
  ranking: z.array(z.number().int().nonnegative()).default([]),
  /** What the strategy decided after the step and why (swires: the retrace test). */
  decision: DetailSchema.nullable().default(null),
  winner: z.number().int().nonnegative(),
});
export type StepTrace = z.infer<typeof StepTraceSchema>;

const Count = z.number().int().nonnegative();

export const CountsSchema = z.object({
  /** Sampled candidates. */
  candidates: Count,
  /** Distinct candidates, summed over the steps (equal to `candidates` when merging is off). */
  distinct: Count.default(0),
  /** Judge calls only; walkovers against defective candidates cost nothing and are not counted. */
  comparisons: Count,
  checks: Count,
  verifications: Count.default(0),
  /** Comparisons, checks and verifications that merging did not ask because their texts were equal. */
  saved: Count.default(0),
  generatedTokens: Count,
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

/** What a driver must do next: run these generations, judgements or verifications, or store the result. */
export const WorkSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("generate"), requests: z.array(GenerateRequestSchema) }),
  z.object({ kind: z.literal("judge"), requests: z.array(JudgeRequestSchema) }),
  z.object({ kind: z.literal("verify"), requests: z.array(VerifyRequestSchema) }),
  z.object({ kind: z.literal("done"), result: SearchResultSchema }),
]);
export type Work = z.infer<typeof WorkSchema>;
