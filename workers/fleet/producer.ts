/**
 * The producer behind `stagebeam submit`: streams a manifest (JSONL, CSV or a folder of
 * images) into request jobs, in chunks, in constant memory.
 *
 * * Idempotent and resumable: an item is skipped when the run's ledger (Redis) already knows
 *   it. The ledger is written right after the chunk's jobs were added, so a producer killed
 *   at any point re-adds at most the chunk it was in the middle of, whose jobs have the same
 *   deterministic ids (BullMQ ignores them while they exist; a worker skips an item whose
 *   result is already in S3).
 * * Bad lines (missing field, unreadable image, path outside the root, …) are reported with
 *   their line number, recorded as runs/<run>/failed/<item>.json with the reason, and skipped.
 * * Backpressure: before adding a chunk it waits while the request queue holds more unfinished
 *   items than `maxBacklog` (waiting, active or waiting for their children), which bounds the
 *   search states kept in Redis however long the manifest.
 * * Local images are staged in S3 under their content hash (after checking they decode);
 *   s3:// images are used where they are.
 */
import { createReadStream } from "node:fs";
import { opendir, readFile, stat } from "node:fs/promises";
import { extname, resolve } from "node:path";
import sharp from "sharp";
import type { Logger } from "../../shared/io/logging.ts";
import {
  IMAGE_EXTENSIONS,
  readManifest,
  detectFormat,
  type ManifestEntry,
  type ManifestFormat,
  type ManifestItem,
} from "../../shared/io/manifest.ts";
import { createSearch } from "../../shared/core/search/index.ts";
import { paramsFor, parseSearchSettings, type SearchSettings } from "../../shared/core/search/settings.ts";
import { failureKey, manifestKey, type S3Store } from "../../shared/io/storage/s3-store.ts";
import { assertRunId, toItemId } from "../../shared/core/ids.ts";
import { UsageError } from "../../shared/core/usage-error.ts";
import type { ProducerMetrics } from "./fleet-metrics.ts";
import { requestJobId } from "./ids.ts";
import type { RunLedger } from "./ledger.ts";
import { PROTOCOL_VERSION, REQUEST_JOB_OPTIONS, type FleetQueues, type RequestJobData } from "./protocol.ts";
import { RECORD_VERSION, RunManifestSchema, settingsDiff, type FailureRecord, type RunManifest } from "./records.ts";

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

export interface BadLine {
  line: number;
  id: string | null;
  item: string;
  reason: string;
  field: string;
  message: string;
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

/** Roughly how many items a manifest holds, for progress and ETA (lines, or image files). */
export async function estimateManifestSize(source: string, format?: ManifestFormat): Promise<number | null> {
  try {
    const st = await stat(source);
    if (st.isDirectory()) {
      let n = 0;
      for await (const d of await opendir(source)) {
        if (!d.name.startsWith(".") && IMAGE_EXTENSIONS.includes(extname(d.name).toLowerCase())) n++;
      }
      return n;
    }
    let lines = 0;
    let last = 10;
    for await (const chunk of createReadStream(source) as AsyncIterable<Buffer>) {
      for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) lines++;
      if (chunk.length > 0) last = chunk[chunk.length - 1]!;
    }
    if (last !== 10) lines++;
    const fmt = format ?? detectFormat(source);
    return Math.max(0, fmt === "csv" ? lines - 1 : lines);
  } catch {
    return null;
  }
}

/** Content check of a local image: it must decode. */
async function checkImage(bytes: Buffer): Promise<string | null> {
  try {
    const meta = await sharp(bytes, { failOn: "error" }).metadata();
    if (!meta.width || !meta.height) return "it has no width or height";
    await sharp(bytes, { failOn: "error" }).stats();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolveSleep) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolveSleep();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

export async function submitRun(opts: SubmitOptions, deps: SubmitDeps): Promise<SubmitSummary> {
  const now = deps.now ?? Date.now;
  const t0 = now();
  // Everything that can be wrong with the command line is checked before anything is written.
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

  const { run } = opts;
  const { store, ledger, queues, logger } = deps;

  // The run manifest: settings must match an earlier submit of the same run.
  const key = manifestKey(run);
  const previous = await store.getJson(key, RunManifestSchema);
  if (previous) {
    const diff = settingsDiff(previous.settings, settings);
    if (diff.length > 0) {
      throw new UsageError(
        `run ${run} was submitted with other settings (${diff.join("; ")}); use a new run name or the same settings`,
      );
    }
  }
  const startedAt = new Date(t0).toISOString();
  const runManifest: RunManifest = previous ?? {
    kind: "run",
    version: RECORD_VERSION,
    run,
    createdAt: startedAt,
    settings,
    source: {
      manifest: source,
      format,
      imageRoot: opts.imageRoot !== undefined ? resolve(opts.imageRoot) : null,
      question: opts.question ?? null,
    },
    submits: [],
  };
  const submitEntry: RunManifest["submits"][number] = {
    startedAt,
    finishedAt: null,
    lines: null,
    enqueued: null,
    skipped: null,
    bad: null,
    interrupted: null,
  };
  runManifest.submits.push(submitEntry);
  await store.putJson(key, runManifest);
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
  let imagesUploaded = 0;
  let imagesReused = 0;
  const staged = new Map<string, string>(); // local path → s3 URI (bounded)

  const recordBad = async (b: BadLine, input: FailureRecord["input"]) => {
    const record: FailureRecord = {
      kind: "failure",
      version: RECORD_VERSION,
      run,
      id: b.id,
      item: b.item,
      line: b.line,
      stage: "submit",
      reason: b.reason,
      message: b.message,
      field: b.field,
      input,
      at: new Date(now()).toISOString(),
    };
    await store.putJson(failureKey(run, b.item), record);
    await ledger.recordOutcome(run, b.item, `f:${b.reason}`);
    await ledger.markSubmitted(run, [[b.item, b.line]]);
    progress.bad++;
    deps.metrics?.itemsSubmitted.inc({ outcome: "bad" });
    opts.onBadLine?.(b);
  };

  const stage = async (item: ManifestItem): Promise<{ uri: string } | { error: string }> => {
    if (item.image.startsWith("s3://")) return { uri: item.image };
    const known = staged.get(item.image);
    if (known) return { uri: known };
    let bytes: Buffer;
    try {
      bytes = await readFile(item.image);
    } catch (err) {
      return { error: `cannot read ${item.image}: ${(err as Error).message}` };
    }
    const problem = await checkImage(bytes);
    if (problem !== null)
      return { error: `${item.image} is not a readable image (${problem}); expected a PNG, JPEG, WebP, GIF, TIFF or AVIF file` };
    const s = await store.putBytes(bytes, extname(item.image) || ".png");
    if (s.uploaded) imagesUploaded++;
    else imagesReused++;
    deps.metrics?.imagesStaged.inc({ uploaded: String(s.uploaded) });
    if (staged.size >= 10_000) staged.clear();
    staged.set(item.image, s.uri);
    return { uri: s.uri };
  };

  const waitForRoom = async (n: number): Promise<boolean> => {
    for (;;) {
      const c = await queues.request.getJobCounts("waiting", "prioritized", "delayed", "active", "waiting-children");
      progress.backlog = Object.values(c).reduce((s, x) => s + x, 0);
      if (progress.backlog === 0 || progress.backlog + n <= maxBacklog) {
        if (progress.throttled) {
          progress.throttled = false;
          report();
        }
        return true;
      }
      if (!progress.throttled) {
        progress.throttled = true;
        report();
      }
      if (opts.signal?.aborted) return false;
      await sleep(opts.backlogPollMs ?? 500, opts.signal);
      if (opts.signal?.aborted) return false;
    }
  };

  const processChunk = async (chunk: ManifestEntry[]): Promise<boolean> => {
    const keyOf = (e: ManifestEntry) => (e.ok ? toItemId(e.item.id) : e.id !== undefined ? toItemId(e.id) : `_line-${e.line}`);
    const keys = chunk.map(keyOf);
    const known = await ledger.submittedLines(run, keys);
    const seen = new Map<string, number>();
    const fresh: { entry: Extract<ManifestEntry, { ok: true }>; key: string }[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const e = chunk[i]!;
      const k = keys[i]!;
      const firstLine = known[i] ?? seen.get(k) ?? null;
      if (firstLine === e.line) {
        progress.skipped++;
        deps.metrics?.itemsSubmitted.inc({ outcome: "skipped" });
        continue;
      }
      if (firstLine !== null) {
        progress.duplicates++;
        deps.metrics?.itemsSubmitted.inc({ outcome: "duplicate" });
        opts.onDuplicate?.({ line: e.line, id: e.ok ? e.item.id : (e.id ?? k), firstLine });
        continue;
      }
      seen.set(k, e.line);
      if (!e.ok) {
        await recordBad(
          { line: e.line, id: e.id ?? null, item: k, reason: `manifest-${e.field}`, field: e.field, message: e.message },
          { image: null, question: null, answer: null },
        );
        continue;
      }
      fresh.push({ entry: e, key: k });
    }

    const staging = await mapLimit(fresh, opts.uploadConcurrency ?? 8, (f) => stage(f.entry.item));
    const jobs: { name: string; data: RequestJobData; opts: typeof REQUEST_JOB_OPTIONS & { jobId: string } }[] = [];
    const submitted: [string, number][] = [];
    for (let i = 0; i < fresh.length; i++) {
      const { entry, key: k } = fresh[i]!;
      const s = staging[i]!;
      const item = entry.item;
      if ("error" in s) {
        await recordBad(
          {
            line: entry.line,
            id: item.id,
            item: k,
            reason: "image-unreadable",
            field: "image",
            message: `line ${entry.line}, item ${JSON.stringify(item.id)}, field "image": ${s.error}`,
          },
          { image: item.image, question: item.question, answer: item.answer ?? null },
        );
        continue;
      }
      const state = createSearch(paramsFor(k, settings));
      jobs.push({
        name: "request",
        data: {
          v: PROTOCOL_VERSION,
          run,
          item: { key: k, id: item.id, image: s.uri, question: item.question, answer: item.answer ?? null, line: entry.line },
          judgeMode: settings.judgeMode,
          state,
          trace: { submittedAt: now(), startedAt: null, stepStartedAt: null, work: [], steps: [], models: [] },
        },
        opts: { ...REQUEST_JOB_OPTIONS, jobId: requestJobId(run, k) },
      });
      submitted.push([k, entry.line]);
    }
    if (jobs.length > 0) {
      if (!(await waitForRoom(jobs.length))) return false;
      await queues.request.addBulk(jobs);
      await ledger.markSubmitted(run, submitted);
      progress.enqueued += jobs.length;
      progress.backlog += jobs.length;
      deps.metrics?.itemsSubmitted.inc({ outcome: "enqueued" }, jobs.length);
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
  Object.assign(submitEntry, {
    finishedAt: new Date(now()).toISOString(),
    lines: progress.lines,
    enqueued: progress.enqueued,
    skipped: progress.skipped,
    bad: progress.bad,
    interrupted,
  });
  try {
    await store.putJson(key, runManifest);
  } catch (err) {
    logger.warn({ err: (err as Error).message }, "could not update the run manifest");
  }
  const { throttled: _t, ...counts } = progress;
  return { run, settings, ...counts, imagesUploaded, imagesReused, seconds, interrupted, created: previous === undefined };
}
