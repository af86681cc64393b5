/** Search parameters: validation with messages that name the field, the value and what was expected. */
import { z } from "zod";
import { SearchError } from "./errors.ts";
import { ITEM_ID_PATTERN, MAX_ITEM_ID_LENGTH } from "../ids.ts";
import { STRATEGIES } from "./types.ts";

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

const notAnObject = (iss: { code?: string; input?: unknown }) =>
  iss.code === "invalid_type" ? `search parameters must be an object, got ${show(iss.input)}` : undefined;

// Strict, so that a misspelt option is an error rather than a silently used default.
export const SearchParamsSchema = z.strictObject(
  {
    itemId: z
      .string({ error: expected("itemId", "a string") })
      .regex(ITEM_ID_PATTERN, { error: expected("itemId", `1-${MAX_ITEM_ID_LENGTH} characters of [A-Za-z0-9_-]`) }),
    strategy: z.enum(STRATEGIES, { error: expected("strategy", `one of ${STRATEGIES.join(", ")}`) }),
    /** Candidates per step; `none` always generates one. */
    beam: positiveInt("beam"),
    seed: nonNegativeInt("seed"),
    /** Token cap of a stage or sentence candidate; a whole answer gets four times this. */
    maxStageTokens: positiveInt("maxStageTokens").default(DEFAULT_MAX_STAGE_TOKENS),
    maxSentenceSteps: positiveInt("maxSentenceSteps").default(DEFAULT_MAX_SENTENCE_STEPS),
  },
  { error: notAnObject },
);
export type SearchParamsInput = z.input<typeof SearchParamsSchema>;
export type SearchParams = z.output<typeof SearchParamsSchema>;

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
