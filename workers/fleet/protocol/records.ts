/**
 * What lands in S3 for each item: `runs/<run>/results/<item>.json` (the full trace) or
 * `runs/<run>/failed/<item>.json` (the reason and the input), and the run's
 * `runs/<run>/manifest.json` (what was submitted, with which settings).
 */
import { z } from "zod";
import { SearchSettingsSchema, type SearchSettings } from "../../../shared/core/search/settings.ts";
import { normalizeAnswer } from "../../../shared/core/eval/stats.ts";
import { SearchParamsSchema } from "../../../shared/core/search/params.ts";
import { SearchResultSchema } from "../../../shared/core/search/types.ts";
import { StepTimingSchema } from "./timings.ts";
import { redactSecrets } from "../../../shared/io/secrets.ts";
import { failureKey, type S3Store } from "../../../shared/io/storage/s3-store.ts";

export const RECORD_VERSION = 1;

const nullableString = z.string().nullable();

/**
 * The schemas are for readers (the dashboard); writers build the records from their own typed
 * values. Read with them, a record keeps any field a newer writer added.
 */
export const ResultRecordSchema = z.looseObject({
  kind: z.literal("result"),
  version: z.literal(RECORD_VERSION),
  run: z.string(),
  /** The id as given in the manifest. */
  id: z.string(),
  /** The fleet's item id (key of the S3 object and of the jobs). */
  item: z.string(),
  line: z.number().int(),
  question: z.string(),
  image: z.string(),
  /** The gold answer from the manifest, when given. */
  gold: nullableString,
  answer: nullableString,
  /** Whether answer and gold agree (normalised); null without a gold answer. */
  correct: z.boolean().nullable(),
  wellFormed: z.boolean(),
  strategy: SearchParamsSchema.shape.strategy,
  beam: z.number().int(),
  seed: z.number().int(),
  params: SearchParamsSchema,
  judgeMode: SearchSettingsSchema.shape.judgeMode,
  model: z.object({ id: z.string(), digest: z.string() }),
  /** Digests of every model that served the item's work (more than one only during a rollout). */
  models: z.array(z.string()),
  /** Every step: each candidate with its text and token count, each check and comparison verdict. */
  search: SearchResultSchema,
  tokens: z.object({ generated: z.number().int() }),
  timings: z.object({
    submittedAt: z.string(),
    startedAt: z.string(),
    finishedAt: z.string(),
    /** From the first step run to the result. */
    seconds: z.number(),
    steps: z.array(StepTimingSchema),
  }),
  /** Worker that wrote the result. */
  worker: z.string(),
});
export type ResultRecord = z.infer<typeof ResultRecordSchema>;

export const FailureRecordSchema = z.looseObject({
  kind: z.literal("failure"),
  version: z.literal(RECORD_VERSION),
  run: z.string(),
  id: nullableString,
  item: z.string(),
  line: z.number().int().nullable(),
  /** Where it failed: at submit (bad manifest line, unreadable image) or in the fleet. */
  stage: z.enum(["submit", "fleet"]),
  /** Short reason code, e.g. manifest-image, image-unreadable, bad-input, search-error, runtime, cancelled. */
  reason: z.string(),
  message: z.string(),
  field: nullableString,
  input: z.object({ image: nullableString, question: nullableString, answer: nullableString }),
  at: z.string(),
  /** Steps the search had finished when it failed (fleet failures). */
  stepsDone: z.number().int().optional(),
  attempts: z.number().int().optional(),
  worker: z.string().optional(),
});
export type FailureRecord = z.infer<typeof FailureRecordSchema>;

export type ItemRecord = ResultRecord | FailureRecord;

/** The item fields a fleet failure record repeats, as a request job carries them. */
interface FailedItem {
  id: string;
  key: string;
  line: number;
  image: string;
  question: string;
  answer: string | null;
}

/** The failure record of an item that ended in the fleet without a result (failed for good, or cancelled). */
export function fleetFailure(
  run: string,
  item: FailedItem,
  f: Pick<FailureRecord, "reason" | "message" | "field" | "at"> &
    Partial<Pick<FailureRecord, "stepsDone" | "attempts" | "worker">>,
): FailureRecord {
  return {
    kind: "failure",
    version: RECORD_VERSION,
    run,
    id: item.id,
    item: item.key,
    line: item.line,
    stage: "fleet",
    input: { image: item.image, question: item.question, answer: item.answer },
    ...f,
  };
}

/**
 * Writes a failure record with its free-text fields redacted: an error message or a manifest's
 * image reference may carry a URL with a password, and failure records are read by anyone with
 * access to the bucket.
 */
export async function putFailureRecord(store: S3Store, record: FailureRecord): Promise<void> {
  const text = (s: string | null) => (s === null ? null : redactSecrets(s));
  const input = { image: text(record.input.image), question: text(record.input.question), answer: text(record.input.answer) };
  await store.putJson(failureKey(record.run, record.item), { ...record, message: redactSecrets(record.message), input });
}

export function isCorrect(answer: string | null, gold: string | null): boolean | null {
  if (gold === null || gold.trim() === "") return null;
  return normalizeAnswer(answer) === normalizeAnswer(gold);
}

// ---------------------------------------------------------------------------
// The run manifest

export const RunManifestSchema = z.object({
  kind: z.literal("run"),
  version: z.literal(RECORD_VERSION),
  run: z.string(),
  createdAt: z.string(),
  settings: SearchSettingsSchema,
  source: z.object({
    manifest: z.string(),
    format: z.string(),
    imageRoot: z.string().nullable(),
    question: z.string().nullable(),
    gzip: z.boolean().optional(),
    detached: z.boolean().optional(),
  }),
  /** The run's state as last mirrored from Redis (books/run-state.ts), with the reason of a failed run. */
  state: z.string().optional(),
  reason: z.string().optional(),
  stateAt: z.string().optional(),
  /** One entry per `submit` of this run (a resumed submit appends one). */
  submits: z.array(
    z.object({
      startedAt: z.string(),
      finishedAt: z.string().nullable(),
      lines: z.number().int().nullable(),
      enqueued: z.number().int().nullable(),
      skipped: z.number().int().nullable(),
      bad: z.number().int().nullable(),
      interrupted: z.boolean().nullable(),
    }),
  ),
});
export type RunManifest = z.infer<typeof RunManifestSchema>;

/** Differences between two runs' settings, as "field: a ≠ b" lines. */
export function settingsDiff(a: SearchSettings, b: SearchSettings): string[] {
  return (Object.keys(a) as (keyof SearchSettings)[])
    .filter((k) => a[k] !== b[k])
    .map((k) => `${k}: ${JSON.stringify(a[k])} ≠ ${JSON.stringify(b[k])}`);
}
