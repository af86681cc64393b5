/** Search parameters: validation with messages that name the field, the value and what was expected. */
import { z } from "zod";
import { SearchError } from "./errors.ts";
import { ITEM_ID_PATTERN, MAX_ITEM_ID_LENGTH } from "../ids.ts";
import { PAIRWISE_JUDGE_MODES, StageSchema, STRATEGIES } from "./types.ts";

export const DEFAULT_MAX_STAGE_TOKENS = 512;
export const DEFAULT_MAX_SENTENCE_STEPS = 40;

const show = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : String(v));
const expected = (field: string, what: string) => (iss: { input?: unknown }) =>
  `${field} must be ${what}, got ${show(iss.input)}`;

const positiveInt = (field: string) => {
  const err = expected(field, "an integer >= 1");
  return z.number({ error: err }).int({ error: err }).min(1, { error: err });
};

const nonNegativeInt = (field: string) => {
  const err = expected(field, "a non-negative safe integer");
  return z.number({ error: err }).int({ error: err }).min(0, { error: err });
};

const temperature = () => {
  const err = expected("temperature", "a number from 0 to 2 (0: the most likely token)");
  return z.number({ error: err }).min(0, { error: err }).max(2, { error: err });
};

const topP = () => {
  const err = expected("topP", "a number in (0, 1]");
  return z.number({ error: err }).gt(0, { error: err }).max(1, { error: err });
};

const nonNegativeNumber = (field: string) => {
  const err = expected(field, "a number >= 0");
  return z.number({ error: err }).min(0, { error: err });
};

/**
 * Stage-wise retracing search after the reference's `swires.py`, with its defaults: one
 * SUMMARY (the best of `summaryWidth`); four CAPTIONs of which the best two are kept; two REASONINGs from each kept caption;
 * back to CAPTION (up to `maxRetraces` times) unless the `retraceRank`-th best reasoning so far
 * scores above mean + `retraceZ`·sd of them all; one CONCLUSION from each of the best
 * `conclusionFrom` reasonings; the best conclusion is the answer.
 */
export const SwiresParamsSchema = z.strictObject({
  summaryWidth: positiveInt("swires.summaryWidth").default(1),
  captionWidth: positiveInt("swires.captionWidth").default(4),
  captionKeep: positiveInt("swires.captionKeep").default(2),
  reasoningPerCaption: positiveInt("swires.reasoningPerCaption").default(2),
  conclusionFrom: positiveInt("swires.conclusionFrom").default(3),
  maxRetraces: nonNegativeInt("swires.maxRetraces").default(4),
  retraceZ: nonNegativeNumber("swires.retraceZ").default(0.2533),
  retraceRank: positiveInt("swires.retraceRank").default(2),
  /**
   * A population of reasoning scores to take the cutoff from (mean + retraceZ·sd, as the
   * reference), instead of the one the verifier reports from its verifier.json `calibration`;
   * with neither, the reasonings scored so far for the item stand in for it.
   */
  population: z
    .strictObject({
      mean: z.number({ error: expected("swires.population.mean", "a number") }),
      sd: nonNegativeNumber("swires.population.sd"),
    })
    .optional(),
});
export type SwiresParams = z.output<typeof SwiresParamsSchema>;
export const DEFAULT_SWIRES: SwiresParams = SwiresParamsSchema.parse({});

const notAnObject = (iss: { code?: string; input?: unknown }) =>
  iss.code === "invalid_type" ? `search parameters must be an object, got ${show(iss.input)}` : undefined;

// Strict, so that a misspelt option is an error rather than a silently used default.
export const SearchParamsSchema = z.strictObject(
  {
    itemId: z
      .string({ error: expected("itemId", "a string") })
      .regex(ITEM_ID_PATTERN, { error: expected("itemId", `1-${MAX_ITEM_ID_LENGTH} characters of [A-Za-z0-9_~-]`) }),
    strategy: z.enum(STRATEGIES, { error: expected("strategy", `one of ${STRATEGIES.join(", ")}`) }),
    /** Candidates per step; `none` always generates one. */
    beam: positiveInt("beam"),
    seed: nonNegativeInt("seed"),
    /** Token cap of a stage or sentence candidate; a whole answer gets four times this. */
    maxStageTokens: positiveInt("maxStageTokens").default(DEFAULT_MAX_STAGE_TOKENS),
    maxSentenceSteps: positiveInt("maxSentenceSteps").default(DEFAULT_MAX_SENTENCE_STEPS),
    /** Sampling temperature of every candidate; absent, the model's (its generation_config). */
    temperature: temperature().optional(),
    /** Nucleus mass of every candidate; absent, the model's. */
    topP: topP().optional(),
    /**
     * The pairwise judge of the search's comparisons and checks (judge mode `generate`), carried
     * in each judge request; absent, `score`.
     */
    judge: z.enum(PAIRWISE_JUDGE_MODES, { error: expected("judge", `one of ${PAIRWISE_JUDGE_MODES.join(", ")}`) }).optional(),
    /** Pick candidates by the verifier's pointwise scores instead of the pairwise judge (judge mode `verifier`). */
    verifier: z.boolean({ error: expected("verifier", "true or false") }).optional(),
    /**
     * Judge equal texts once (merge.ts): a step's candidates are grouped by text, and checks,
     * comparisons and verifier scores are asked once per distinct text. Off, every candidate is
     * judged as the paper does; the answers are the same under a deterministic judge.
     */
    merge: z.boolean({ error: expected("merge", "true or false") }).default(true),
    /**
     * Candidates that differ: sample a candidate again, up to this many times, while its text
     * equals an earlier candidate's of the step (judged steps only; a vote counts repeats).
     */
    resample: nonNegativeInt("resample").optional(),
    /** The stages that resample (stage-wise strategies); absent, every judged step does. */
    resampleStages: z
      .array(StageSchema, { error: expected("resampleStages", "a list of stage names") })
      .min(1, { error: expected("resampleStages", "at least one stage") })
      .optional(),
    /** Sampling temperature of a stage's candidates (stage-wise strategies), instead of the model's. */
    stageTemperature: z
      .partialRecord(StageSchema, nonNegativeNumber("stageTemperature"), {
        error: expected("stageTemperature", "an object of stage names to temperatures"),
      })
      .optional(),
    /** swires' widths, keep counts and retrace rule; absent, the reference's (DEFAULT_SWIRES). */
    swires: SwiresParamsSchema.optional(),
  },
  { error: notAnObject },
);
export type SearchParamsInput = z.input<typeof SearchParamsSchema>;
export type SearchParams = z.output<typeof SearchParamsSchema>;

/**
 * What one item may set for itself (an OpenAI batch line's seed, max_tokens, temperature,
 * top_p): it changes how the item's own candidates are drawn, never the shape of the run's
 * search, so items of one run may differ in it.
 */
export const ItemSettingsSchema = z.strictObject({
  seed: nonNegativeInt("seed").optional(),
  maxStageTokens: positiveInt("maxStageTokens").optional(),
  temperature: temperature().optional(),
  topP: topP().optional(),
});
export type ItemSettings = z.output<typeof ItemSettingsSchema>;

export function parseSearchParams(input: unknown): SearchParams {
  const r = SearchParamsSchema.safeParse(input);
  if (r.success) return r.data;
  const itemId =
    typeof input === "object" && input !== null && typeof (input as { itemId?: unknown }).itemId === "string"
      ? (input as { itemId: string }).itemId
      : null;
  const problems = r.error.issues.map((i) =>
    i.code === "unrecognized_keys" ? `unknown parameter(s) ${i.keys.join(", ")}` : i.message,
  );
  throw new SearchError(itemId, `invalid search parameters: ${problems.join("; ")}`);
}
