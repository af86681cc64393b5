/**
 * What lands in S3 for each item: `runs/<run>/results/<item>.json` (the full trace) or
 * `runs/<run>/failed/<item>.json` (the reason and the input), and the run's
 * `runs/<run>/manifest.json` (what was submitted, with which settings).
 */
import { z } from "zod";
import { SearchSettingsSchema, type JudgeMode, type SearchSettings } from "../../shared/core/search/settings.ts";
import { normalizeAnswer } from "../../shared/core/eval/stats.ts";
import type { SearchParams, SearchResult } from "../../shared/core/search/index.ts";
import type { StepTiming } from "./protocol.ts";

export const RECORD_VERSION = 1;

export interface ResultRecord {
  kind: "result";
  version: typeof RECORD_VERSION;
  run: string;
  /** The id as given in the manifest. */
  id: string;
  /** The fleet's item id (key of the S3 object and of the jobs). */
  item: string;
  line: number;
  question: string;
  image: string;
  /** The gold answer from the manifest, when given. */
  gold: string | null;
  answer: string | null;
  /** Whether answer and gold agree (normalised); null without a gold answer. */
  correct: boolean | null;
  wellFormed: boolean;
  strategy: SearchParams["strategy"];
  beam: number;
  seed: number;
  params: SearchParams;
  judgeMode: JudgeMode;
  model: { id: string; digest: string };
  /** Digests of every model that served the item's work (more than one only during a rollout). */
  models: string[];
  /** Every step: each candidate with its text and token count, each check and comparison verdict. */
  search: SearchResult;
  tokens: { generated: number };
  timings: {
    submittedAt: string;
    startedAt: string;
    finishedAt: string;
    /** From the first step run to the result. */
    seconds: number;
    steps: StepTiming[];
  };
  /** Worker that wrote the result. */
  worker: string;
}

export const FailureRecordSchema = z.object({
  kind: z.literal("failure"),
  version: z.literal(RECORD_VERSION),
  run: z.string(),
  id: z.string().nullable(),
  item: z.string(),
  line: z.number().int().nullable(),
  /** Where it failed: at submit (bad manifest line, unreadable image) or in the fleet. */
  stage: z.enum(["submit", "fleet"]),
  /** Short reason code, e.g. manifest-image, image-unreadable, bad-input, search-error, runtime, cancelled. */
  reason: z.string(),
  message: z.string(),
  field: z.string().nullable(),
  input: z.object({ image: z.string().nullable(), question: z.string().nullable(), answer: z.string().nullable() }),
  at: z.string(),
  /** Steps the search had finished when it failed (fleet failures). */
  stepsDone: z.number().int().optional(),
  attempts: z.number().int().optional(),
  worker: z.string().optional(),
});
export type FailureRecord = z.infer<typeof FailureRecordSchema>;

export type ItemRecord = ResultRecord | FailureRecord;

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
  /** The run's state as last mirrored from Redis (run-state.ts), with the reason of a failed run. */
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
