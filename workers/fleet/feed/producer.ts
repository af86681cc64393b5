/**
 * The producer behind `stagebeam submit`: creates the run (its state, settings and source in
 * Redis, books/run-state.ts; its manifest in S3, run-manifest.ts), then either feeds the manifest
 * into the queues itself (feeder.ts) or, with `detach`, puts the manifest in S3 when it is not
 * there already and leaves the feeding to a feed job in the fleet, returning at once.
 *
 * * Idempotent and resumable: the feeder keeps its cursor in Redis and skips items the run's
 *   ledger already knows; re-running a submit adds nothing twice, and looks again at lines
 *   that were refused before (they may have been fixed).
 * * Manifests: a local JSONL or CSV file or folder of images, stdin (`-`) or s3://bucket/key;
 *   gzip accepted (manifest-source.ts).
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import type { Readable } from "node:stream";
import { assertRunId } from "../../../shared/core/ids.ts";
import { parseSearchSettings, type SearchSettings } from "../../../shared/core/search/settings.ts";
import { UsageError } from "../../../shared/core/usage-error.ts";
import type { Logger } from "../../../shared/io/logging.ts";
import { detectFormat } from "../../../shared/io/manifest.ts";
import { formatFromName, isS3Manifest, openManifest, type ManifestFileFormat } from "../../../shared/io/manifest-source.ts";
import { inputKey, type S3Store } from "../../../shared/io/storage/s3-store.ts";
import { feedRun, type FeedOptions, type FeedProgress, type FeedSummary } from "./feeder.ts";
import type { ProducerMetrics } from "./producer-metrics.ts";
import {
  FEED_JOB_OPTIONS,
  type FeedJobData,
  feedJobId,
  type FleetQueues,
  PROTOCOL_VERSION,
  settingsDiff,
} from "../protocol/index.ts";
import type { BadLineLimit, RunLedger, RunRegistry, RunSource, RunState } from "../books/index.ts";
import { estimateManifestSize } from "./manifest-size.ts";
import { openRunManifest } from "./run-manifest.ts";

export const DEFAULT_MAX_BACKLOG = 1_000;
export const DEFAULT_CHUNK_SIZE = 500;

export interface SubmitOptions {
  run: string;
  /** JSONL or CSV file, a folder of images, `-` (stdin) or s3://bucket/key. */
  manifest: string;
  format?: "jsonl" | "csv";
  /** The question for every image of a folder. */
  question?: string;
  /** Local image paths must resolve inside it (default: the manifest's folder). */
  imageRoot?: string;
  /** Checked here, before anything is touched (parseSearchSettings). */
  settings: unknown;
  maxBacklog?: number;
  chunkSize?: number;
  /** A run with more bad lines than this stops in `failed` (default: no limit). */
  maxBadLines?: BadLineLimit | null;
  /** Leave the feeding to the fleet and return once the run exists. */
  detach?: boolean;
  /** The manifest's bytes when `manifest` is `-` (default process.stdin). */
  stdin?: Readable;
  /** Parallel image uploads (default 8). */
  uploadConcurrency?: number;
  /** How often to look at the backlog while it is full (default 500 ms). */
  backlogPollMs?: number;
  /** Abort (Ctrl-C): the chunk in flight is finished, then the submit stops; re-run to resume. */
  signal?: AbortSignal;
  onProgress?(p: SubmitProgress): void;
  onBadLine?: FeedOptions["onBadLine"];
  onDuplicate?: FeedOptions["onDuplicate"];
}

export interface SubmitDeps {
  queues: Pick<FleetQueues, "request" | "feed">;
  store: S3Store;
  ledger: RunLedger;
  runs: RunRegistry;
  logger: Logger;
  metrics?: ProducerMetrics;
  now?: () => number;
}

export interface SubmitProgress extends FeedProgress {
  /** Estimated entries in the manifest (null while unknown, or for stdin and S3). */
  total: number | null;
}

export interface SubmitSummary extends Omit<FeedSummary, "throttled"> {
  run: string;
  settings: SearchSettings;
  total: number | null;
  seconds: number;
  /** First submit of this run name (false: a resumed or repeated submit). */
  created: boolean;
  /** The manifest was left to a feed job in the fleet. */
  detached: boolean;
}

/** Everything that can be wrong with the command line, checked before anything is written. */
async function checkUsage(opts: SubmitOptions) {
  try {
    assertRunId(opts.run);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const settings = parseSearchSettings(opts.settings);
  const maxBacklog = opts.maxBacklog ?? DEFAULT_MAX_BACKLOG;
  if (!Number.isInteger(maxBacklog) || maxBacklog < 1)
    throw new UsageError(`max backlog must be an integer >= 1, got ${maxBacklog}`);
  const chunkSize = Math.max(1, Math.min(opts.chunkSize ?? DEFAULT_CHUNK_SIZE, maxBacklog));
  const remote = opts.manifest === "-" || isS3Manifest(opts.manifest);
  const source = remote ? opts.manifest : resolve(opts.manifest);
  const isDir = remote
    ? false
    : await stat(source).then(
        (s) => s.isDirectory(),
        (e: NodeJS.ErrnoException) => {
          throw new UsageError(
            e.code === "ENOENT" ? `manifest not found: ${opts.manifest}` : `cannot read manifest ${opts.manifest}: ${e.message}`,
          );
        },
      );
  if (isDir && (opts.question === undefined || opts.question.trim() === "")) {
    throw new UsageError(`${opts.manifest} is a folder of images: give the question to ask of every image with --question`);
  }
  if (isDir && opts.detach) {
    throw new UsageError(`${opts.manifest} is a folder of images, which only this machine can read: submit it without --detach`);
  }
  const named = remote ? undefined : detectFormat(source.replace(/\.gz$/i, ""));
  if (!remote && !isDir && opts.format === undefined && named === undefined)
    throw new UsageError(
      `cannot tell the format of ${opts.manifest} from its extension; expected .jsonl or .csv (.gz too), or give --format`,
    );
  if (opts.imageRoot !== undefined) {
    const ok = await stat(opts.imageRoot).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!ok) throw new UsageError(`image root ${opts.imageRoot} is not a folder`);
  }
  const format: RunSource["format"] | undefined = isDir ? "folder" : (opts.format ?? formatFromName(source));
  return { settings, maxBacklog, chunkSize, source, format };
}

/** Puts a local or stdin manifest in S3 for a detached run, as it is; its s3:// URI, and the format and gzip found in it. */
async function uploadManifest(
  run: string,
  source: string,
  format: ManifestFileFormat | undefined,
  deps: SubmitDeps,
  stdin?: Readable,
): Promise<{ uri: string; format: ManifestFileFormat; gzip: boolean }> {
  const key = inputKey(run, "manifest");
  const bytes = source === "-" ? (stdin ?? process.stdin) : createReadStream(source);
  await deps.store.putStream(key, bytes as AsyncIterable<Uint8Array>);
  // Read back what was stored: stdin can be read only once.
  const uri = deps.store.uri(key);
  const opened = await openManifest(uri, { ...(format ? { format } : {}), store: deps.store });
  opened.stream.destroy();
  return { uri, format: opened.format, gzip: opened.gzip };
}

export async function submitRun(opts: SubmitOptions, deps: SubmitDeps): Promise<SubmitSummary> {
  const now = deps.now ?? Date.now;
  const t0 = now();
  const usage = await checkUsage(opts);
  const { settings, maxBacklog, chunkSize } = usage;
  const { run } = opts;
  const { store, ledger, runs, queues } = deps;

  const existing = await runs.get(run);
  if (existing) {
    const diff = settingsDiff(existing.settings, settings);
    if (diff.length > 0)
      throw new UsageError(
        `run ${run} was submitted with other settings (${diff.join("; ")}); use a new run name or the same settings`,
      );
    if (existing.state === "cancelled" || existing.state === "failed")
      throw new UsageError(
        `run ${run} is ${existing.state}${existing.reason ? ` (${existing.reason})` : ""}; use a new run name`,
      );
  }

  let source: RunSource = {
    manifest: usage.source,
    format: usage.format ?? "jsonl",
    gzip: false,
    imageRoot: opts.imageRoot !== undefined ? resolve(opts.imageRoot) : null,
    question: opts.question ?? null,
    detached: opts.detach ?? false,
  };
  if (opts.detach) {
    if (existing?.source.detached) {
      source = existing.source;
    } else if (isS3Manifest(usage.source)) {
      const opened = await openManifest(usage.source, {
        ...(usage.format ? { format: usage.format as ManifestFileFormat } : {}),
        store,
      });
      opened.stream.destroy();
      source = { ...source, format: opened.format, gzip: opened.gzip };
    } else {
      const up = await uploadManifest(run, usage.source, usage.format as ManifestFileFormat | undefined, deps, opts.stdin);
      source = { ...source, manifest: up.uri, format: up.format, gzip: up.gzip };
    }
  } else if (usage.format === undefined) {
    source.format = "jsonl"; // sniffed again by the feeder, which reads the bytes
  }

  const runManifest = await openRunManifest(
    store,
    run,
    settings,
    {
      manifest: source.manifest,
      format: source.format,
      imageRoot: source.imageRoot,
      question: source.question,
      gzip: source.gzip,
      detached: source.detached,
    },
    t0,
  );
  await ledger.markCreated(run, t0);
  const { created, meta } = await runs.create(
    run,
    { settings, source, badLineLimit: opts.maxBadLines ?? null, chunkSize, maxBacklog },
    t0,
  );
  if (!created && meta.fed === "1") await runs.restartFeed(run);

  const total =
    source.manifest === "-" || isS3Manifest(source.manifest) ? null : await estimateManifestSize(source.manifest, source.format);
  const base = { run, settings, total, created, detached: source.detached };
  if (source.detached) {
    const id = feedJobId(run);
    const old = await queues.feed.getJob(id);
    if (old && ((await old.isCompleted()) || (await old.isFailed()))) await old.remove();
    await queues.feed.add("feed", { v: PROTOCOL_VERSION, run } satisfies FeedJobData, { ...FEED_JOB_OPTIONS, jobId: id });
    const state: RunState = meta.state;
    return {
      ...base,
      lines: 0,
      resumedAt: meta.cursor,
      enqueued: 0,
      skipped: 0,
      bad: 0,
      duplicates: 0,
      backlog: 0,
      imagesUploaded: 0,
      imagesReused: 0,
      interrupted: false,
      state,
      reason: meta.reason,
      seconds: (now() - t0) / 1000,
    };
  }

  const fed = await feedRun(run, deps, {
    localImages: true,
    ...(opts.stdin ? { stdin: opts.stdin } : {}),
    ...(opts.uploadConcurrency !== undefined ? { uploadConcurrency: opts.uploadConcurrency } : {}),
    ...(opts.backlogPollMs !== undefined ? { backlogPollMs: opts.backlogPollMs } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onProgress ? { onProgress: (p: FeedProgress) => opts.onProgress?.({ ...p, total }) } : {}),
    ...(opts.onBadLine ? { onBadLine: opts.onBadLine } : {}),
    ...(opts.onDuplicate ? { onDuplicate: opts.onDuplicate } : {}),
  });
  const { lines, enqueued, skipped, bad, interrupted } = fed;
  try {
    await runManifest.finish({ lines, enqueued, skipped, bad, interrupted }, now());
  } catch (err) {
    deps.logger.warn({ err: (err as Error).message }, "could not update the run manifest");
  }
  return { ...base, ...fed, seconds: (now() - t0) / 1000 };
}
