/**
 * The producer behind `stagebeam submit`: streams a manifest (JSONL, CSV or a folder of
 * images) into request jobs, in chunks, in constant memory.
 *
 * * Idempotent and resumable: an item is skipped when the run's ledger (Redis) already knows
 *   it (dedup.ts). The ledger is written right after the chunk's jobs were added, so a
 *   producer killed at any point re-adds at most the chunk it was in the middle of, whose jobs
 *   have the same deterministic ids (BullMQ ignores them while they exist; a worker skips an
 *   item whose result is already in S3).
 * * Bad lines (missing field, unreadable image, path outside the root, …) are reported with
 *   their line number, recorded as runs/<run>/failed/<item>.json with the reason, and skipped
 *   (bad-lines.ts).
 * * Backpressure: before adding a chunk it waits while the request queue holds more unfinished
 *   items than `maxBacklog` (backpressure.ts).
 * * Local images are staged in S3 under their content hash after checking they decode;
 *   s3:// images are used where they are (image-staging.ts).
 * * The run manifest in S3 holds the run's settings and one entry per submit (run-manifest.ts).
 */
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { assertRunId } from "../../shared/core/ids.ts";
import { parseSearchSettings, type SearchSettings } from "../../shared/core/search/settings.ts";
import { UsageError } from "../../shared/core/usage-error.ts";
import type { Logger } from "../../shared/io/logging.ts";
import { detectFormat, readManifest, type ManifestEntry, type ManifestFormat } from "../../shared/io/manifest.ts";
import type { S3Store } from "../../shared/io/storage/s3-store.ts";
import { waitForRoom, type BacklogOptions } from "./backpressure.ts";
import { recordBadLine, type BadLine } from "./bad-lines.ts";
import { sortChunk } from "./dedup.ts";
import type { ProducerMetrics } from "./fleet-metrics.ts";
import { ImageStager } from "./image-staging.ts";
import { requestJob } from "./jobs.ts";
import type { RunLedger } from "./ledger.ts";
import { estimateManifestSize } from "./manifest-size.ts";
import type { FleetQueues } from "./protocol.ts";
import type { FailureRecord } from "./records.ts";
import { openRunManifest } from "./run-manifest.ts";

export const DEFAULT_MAX_BACKLOG = 1_000;
export const DEFAULT_CHUNK_SIZE = 100;

export interface SubmitOptions {
  run: string;
  /** JSONL or CSV file, or a folder of images. */
  manifest: string;
  format?: ManifestFormat;
  /** The question for every image of a folder. */
  question?: string;
  /** Local image paths must resolve inside it (default: the manifest's folder). */
  imageRoot?: string;
  /** Checked here, before anything is touched (parseSearchSettings). */
  settings: unknown;
  maxBacklog?: number;
  chunkSize?: number;
  /** Parallel image uploads (default 8). */
  uploadConcurrency?: number;
  /** How often to look at the backlog while it is full (default 500 ms). */
  backlogPollMs?: number;
  /** Abort (Ctrl-C): the chunk in flight is finished, then the submit stops; re-run to resume. */
  signal?: AbortSignal;
  onProgress?(p: SubmitProgress): void;
  /** Each bad line, as it is found. */
  onBadLine?(b: BadLine): void;
  /** A line whose id an earlier line of the run already has. */
  onDuplicate?(d: { line: number; id: string; firstLine: number }): void;
}

export interface SubmitDeps {
  queues: Pick<FleetQueues, "request">;
  store: S3Store;
  ledger: RunLedger;
  logger: Logger;
  metrics?: ProducerMetrics;
  now?: () => number;
}

export interface SubmitProgress {
  /** Manifest lines handled so far (enqueued, skipped, bad or duplicate). */
  lines: number;
  /** Estimated lines in the manifest (null while unknown). */
  total: number | null;
  enqueued: number;
  skipped: number;
  bad: number;
  duplicates: number;
  /** Unfinished request jobs when last checked (backpressure). */
  backlog: number;
  /** True while the producer waits for the backlog to drain. */
  throttled: boolean;
}

export interface SubmitSummary extends Omit<SubmitProgress, "throttled"> {
  run: string;
  settings: SearchSettings;
  imagesUploaded: number;
  imagesReused: number;
  seconds: number;
  interrupted: boolean;
  /** First run of this run name (false: a resumed or repeated submit). */
  created: boolean;
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
  const source = resolve(opts.manifest);
  const isDir = await stat(source).then(
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
  const format: ManifestFormat | undefined = isDir ? "folder" : (opts.format ?? detectFormat(source));
  if (format === undefined)
    throw new UsageError(
      `cannot tell the format of ${opts.manifest} from its extension; expected .jsonl or .csv, or give --format`,
    );
  if (opts.imageRoot !== undefined) {
    const ok = await stat(opts.imageRoot).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!ok) throw new UsageError(`image root ${opts.imageRoot} is not a folder`);
  }
  return { settings, maxBacklog, chunkSize, source, format };
}

export async function submitRun(opts: SubmitOptions, deps: SubmitDeps): Promise<SubmitSummary> {
  const now = deps.now ?? Date.now;
  const t0 = now();
  const { settings, maxBacklog, chunkSize, source, format } = await checkUsage(opts);
  const { run } = opts;
  const { store, ledger, queues, logger, metrics } = deps;

  const runManifest = await openRunManifest(
    store,
    run,
    settings,
    {
      manifest: source,
      format,
      imageRoot: opts.imageRoot !== undefined ? resolve(opts.imageRoot) : null,
      question: opts.question ?? null,
    },
    t0,
  );
  await ledger.markCreated(run, t0);

  const progress: SubmitProgress = {
    lines: 0,
    total: await estimateManifestSize(source, format),
    enqueued: 0,
    skipped: 0,
    bad: 0,
    duplicates: 0,
    backlog: 0,
    throttled: false,
  };
  const report = () => opts.onProgress?.({ ...progress });
  report();
  const images = new ImageStager(store, metrics);
  const backlog: BacklogOptions = {
    maxBacklog,
    pollMs: opts.backlogPollMs ?? 500,
    ...(opts.signal ? { signal: opts.signal } : {}),
    onBacklog: (n, throttled) => {
      progress.backlog = n;
      if (throttled !== progress.throttled) {
        progress.throttled = throttled;
        report();
      }
    },
  };

  const recordBad = async (b: BadLine, input: FailureRecord["input"]) => {
    await recordBadLine(run, b, input, deps, now());
    progress.bad++;
    metrics?.itemsSubmitted.inc({ outcome: "bad" });
    opts.onBadLine?.(b);
  };

  /** False when aborted while waiting for room (the chunk's new items are not enqueued). */
  const processChunk = async (chunk: ManifestEntry[]): Promise<boolean> => {
    const fresh: { entry: Extract<ManifestEntry, { ok: true }>; key: string }[] = [];
    for (const sorted of await sortChunk(run, chunk, ledger)) {
      const { entry: e, key } = sorted;
      if (sorted.kind === "skipped") {
        progress.skipped++;
        metrics?.itemsSubmitted.inc({ outcome: "skipped" });
      } else if (sorted.kind === "duplicate") {
        progress.duplicates++;
        metrics?.itemsSubmitted.inc({ outcome: "duplicate" });
        opts.onDuplicate?.({ line: e.line, id: e.ok ? e.item.id : (e.id ?? key), firstLine: sorted.firstLine });
      } else if (!e.ok) {
        await recordBad(
          { line: e.line, id: e.id ?? null, item: key, reason: `manifest-${e.field}`, field: e.field, message: e.message },
          { image: null, question: null, answer: null },
        );
      } else {
        fresh.push({ entry: e, key });
      }
    }

    const staged = await images.stageAll(
      fresh.map((f) => f.entry.item.image),
      opts.uploadConcurrency ?? 8,
    );
    const jobs: ReturnType<typeof requestJob>[] = [];
    const submitted: [string, number][] = [];
    for (const [i, { entry, key }] of fresh.entries()) {
      const s = staged[i]!;
      const { item, line } = entry;
      if ("error" in s) {
        await recordBad(
          {
            line,
            id: item.id,
            item: key,
            reason: "image-unreadable",
            field: "image",
            message: `line ${line}, item ${JSON.stringify(item.id)}, field "image": ${s.error}`,
          },
          { image: item.image, question: item.question, answer: item.answer ?? null },
        );
        continue;
      }
      const requestItem = { key, id: item.id, image: s.uri, question: item.question, answer: item.answer ?? null, line };
      jobs.push(requestJob(run, requestItem, settings, now()));
      submitted.push([key, line]);
    }
    if (jobs.length > 0) {
      if (!(await waitForRoom(queues.request, jobs.length, backlog))) return false;
      await queues.request.addBulk(jobs);
      await ledger.markSubmitted(run, submitted);
      progress.enqueued += jobs.length;
      progress.backlog += jobs.length;
      metrics?.itemsSubmitted.inc({ outcome: "enqueued" }, jobs.length);
    }
    return true;
  };

  let interrupted = false;
  let chunk: ManifestEntry[] = [];
  const flush = async () => {
    const entries = chunk;
    chunk = [];
    const ok = await processChunk(entries);
    if (ok) progress.lines += entries.length;
    report();
    return ok;
  };
  const entries = readManifest(source, {
    format,
    ...(opts.question !== undefined ? { question: opts.question } : {}),
    ...(opts.imageRoot !== undefined ? { imageRoot: opts.imageRoot } : {}),
  });
  for await (const entry of entries) {
    chunk.push(entry);
    if (chunk.length >= chunkSize) {
      if (!(await flush()) || opts.signal?.aborted) {
        interrupted = true;
        break;
      }
    }
  }
  if (!interrupted && chunk.length > 0) interrupted = !(await flush());
  if (opts.signal?.aborted) interrupted = true;

  const seconds = (now() - t0) / 1000;
  const { lines, enqueued, skipped, bad } = progress;
  try {
    await runManifest.finish({ lines, enqueued, skipped, bad, interrupted }, now());
  } catch (err) {
    logger.warn({ err: (err as Error).message }, "could not update the run manifest");
  }
  const { throttled: _t, ...counts } = progress;
  return {
    run,
    settings,
    ...counts,
    imagesUploaded: images.uploaded,
    imagesReused: images.reused,
    seconds,
    interrupted,
    created: runManifest.created,
  };
}
