/**
 * The feeder: streams a run's manifest into request jobs, in chunks, in constant memory, under
 * backpressure. `submit` runs it in its own process; `submit --detach` leaves it to a feed job
 * that a fleet worker runs (one per run: the job id is the run's).
 *
 * * Resumable: the cursor (manifest entries handled) and the feed counters are kept in the
 *   run's meta hash after every chunk; a feeder that died is resumed from there, and the
 *   ledger still skips a line whose item it already took in (dedup.ts), so at most the chunk
 *   in flight is looked at twice and nothing is enqueued twice.
 * * Bad lines are recorded (bad-lines.ts); over the run's limit (`--max-bad-lines`) the run
 *   stops in `failed` with the reason. So does a wrong CSV header or a manifest that cannot
 *   be read, and a run of which no line could be enqueued.
 * * Every chunk looks at the run's state first: a cancelled run is fed no further.
 * * The run's settings live once in its meta hash: a request job carries only its item, and
 *   the worker creates the search state at the first step.
 */
import { dirname, resolve } from "node:path";
import type { Readable } from "node:stream";
import type { SearchSettings } from "../../../shared/core/search/settings.ts";
import type { Logger } from "../../../shared/io/logging.ts";
import { ImageResolver, readImageFolder, readManifestStream, type ManifestEntry } from "../../../shared/io/manifest.ts";
import { openManifest } from "../../../shared/io/manifest-source.ts";
import { OPENAI_SETTING_FIELDS, type LineSettings } from "../../../shared/io/openai-batch.ts";
import type { S3Store } from "../../../shared/io/storage/s3-store.ts";
import { waitForRoom, type BacklogOptions } from "./backpressure.ts";
import { recordBadLine, type BadLine } from "./bad-lines.ts";
import { addInParts } from "./bulk-add.ts";
import { duplicateLineKey, sortChunk } from "./dedup.ts";
import type { ProducerMetrics } from "./producer-metrics.ts";
import { ImageStager } from "./image-staging.ts";
import { type FailureRecord, type FleetQueues, requestJob } from "../protocol/index.ts";
import {
  type BadLineLimit,
  mirrorRunState,
  type RunLedger,
  type RunMeta,
  type RunRegistry,
  type RunState,
  TERMINAL_STATES,
} from "../books/index.ts";
import { writeIndexChunk, type IndexEntry } from "./run-index.ts";

export interface FeedDeps {
  queues: Pick<FleetQueues, "request">;
  store: S3Store;
  ledger: RunLedger;
  runs: RunRegistry;
  logger: Logger;
  metrics?: ProducerMetrics;
  now?: () => number;
}

export interface FeedProgress {
  /** Manifest entries handled so far by this feeder (enqueued, skipped, bad or duplicate). */
  lines: number;
  /** Where this feeder started (entries a previous feeder of the run had handled). */
  resumedAt: number;
  enqueued: number;
  skipped: number;
  bad: number;
  duplicates: number;
  /** Unfinished request jobs when last checked (backpressure). */
  backlog: number;
  /** True while the feeder waits for the backlog to drain. */
  throttled: boolean;
}

export interface FeedOptions {
  /** The manifest's bytes when its source is `-`. */
  stdin?: Readable;
  /** Local image paths are readable here (false in the fleet: only s3:// and data: images). */
  localImages: boolean;
  uploadConcurrency?: number;
  backlogPollMs?: number;
  /** Abort (Ctrl-C, a worker stopping): the chunk in flight is finished, then the feeder stops. */
  signal?: AbortSignal;
  onProgress?(p: FeedProgress): void;
  onBadLine?(b: BadLine): void;
  onDuplicate?(d: { line: number; id: string; firstLine: number }): void;
}

export interface FeedSummary extends Omit<FeedProgress, "throttled"> {
  imagesUploaded: number;
  imagesReused: number;
  interrupted: boolean;
  /** The run's state when the feeder stopped, with the reason of a failed run. */
  state: RunState;
  reason: string;
}

/** Whether `bad` bad lines of `lines` read exceed the limit (a percentage is judged on 100 lines or more, or at the end). */
export function overBadLineLimit(limit: BadLineLimit | null, bad: number, lines: number, atEnd: boolean): boolean {
  if (limit === null) return false;
  if ("lines" in limit) return bad > limit.lines;
  return (atEnd || lines >= 100) && lines > 0 && (100 * bad) / lines > limit.percent;
}

const describeLimit = (l: BadLineLimit) => ("lines" in l ? `${l.lines} lines` : `${l.percent}% of the lines`);

/** A line asking for other settings than the run's: which field, and the two values. */
function settingsMismatch(line: LineSettings | undefined, run: SearchSettings) {
  for (const [k, v] of Object.entries(line ?? {}) as [keyof LineSettings, unknown][]) {
    if (run[k] !== v) return { field: OPENAI_SETTING_FIELDS[k], got: v, expected: run[k] };
  }
  return null;
}

function openEntries(
  meta: RunMeta,
  deps: FeedDeps,
  opts: FeedOptions,
): Promise<AsyncIterable<ManifestEntry>> | AsyncIterable<ManifestEntry> {
  const { source } = meta;
  if (source.format === "folder") {
    return readImageFolder(
      source.manifest,
      source.question ?? "",
      source.imageRoot !== null ? { imageRoot: source.imageRoot } : {},
    );
  }
  const local = !source.manifest.startsWith("s3://") && source.manifest !== "-";
  const root = source.imageRoot ?? (local ? dirname(resolve(source.manifest)) : "/");
  return openManifest(source.manifest, {
    format: source.format,
    store: deps.store,
    ...(opts.stdin ? { stdin: opts.stdin } : {}),
  }).then((m) => readManifestStream(m.stream, m.format, new ImageResolver(root, opts.localImages)));
}

export async function feedRun(run: string, deps: FeedDeps, opts: FeedOptions): Promise<FeedSummary> {
  const now = deps.now ?? Date.now;
  const { store, ledger, runs, queues, metrics } = deps;
  const meta = await runs.get(run);
  if (!meta) throw new Error(`run ${run} does not exist`);
  const resumedAt = meta.cursor;
  const progress: FeedProgress = {
    lines: 0,
    resumedAt,
    enqueued: 0,
    skipped: 0,
    bad: 0,
    duplicates: 0,
    backlog: 0,
    throttled: false,
  };
  const images = new ImageStager(store, metrics);
  let state: RunState = meta.state;
  let reason = meta.reason;
  let interrupted = false;
  const summary = (): FeedSummary => {
    const { throttled: _t, ...counts } = progress;
    return { ...counts, imagesUploaded: images.uploaded, imagesReused: images.reused, interrupted, state, reason };
  };
  if (TERMINAL_STATES.includes(state) && state !== "completed") return summary();

  const move = async (to: RunState, why = "") => {
    if ((await runs.transition(run, to, why, now())) === null) return;
    state = to;
    reason = why;
    await mirrorRunState(store, run, { state, reason, updatedAt: now() }).catch((err: Error) =>
      deps.logger.warn({ run, err: err.message }, "could not mirror the run's state to S3"),
    );
  };

  let entries: AsyncIterable<ManifestEntry>;
  try {
    entries = await openEntries(meta, deps, opts);
  } catch (err) {
    await move("failed", `the manifest cannot be read: ${(err as Error).message}`);
    return summary();
  }

  const report = () => opts.onProgress?.({ ...progress });
  report();
  const backlog: BacklogOptions = {
    maxBacklog: meta.maxBacklog,
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

  let counted = { ...progress };
  const recordBad = async (b: BadLine, input: FailureRecord["input"]) => {
    await recordBadLine(run, b, input, deps, now());
    progress.bad++;
    metrics?.itemsSubmitted.inc({ outcome: "bad" });
    opts.onBadLine?.(b);
  };

  /** False when it had to stop (aborted while waiting for room, a wrong header). */
  const processChunk = async (chunk: ManifestEntry[], chunkNo: number): Promise<boolean> => {
    const header = chunk.find((e) => !e.ok && e.field === "header");
    if (header && !header.ok) {
      // Not an item: the run cannot proceed at all.
      await move("failed", header.message);
      return false;
    }
    const index: IndexEntry[] = [];
    const fresh: { entry: Extract<ManifestEntry, { ok: true }>; key: string; wasBad: boolean }[] = [];
    for (const sorted of await sortChunk(run, chunk, ledger)) {
      const { entry: e, key } = sorted;
      const id = e.ok ? e.item.id : (e.id ?? null);
      index.push([e.line, sorted.kind === "duplicate" ? duplicateLineKey(e.line) : key, id]);
      if (sorted.kind === "skipped") {
        progress.skipped++;
        metrics?.itemsSubmitted.inc({ outcome: "skipped" });
      } else if (sorted.kind === "duplicate") {
        progress.duplicates++;
        metrics?.itemsSubmitted.inc({ outcome: "duplicate" });
        // Recorded under a key of its own (the id's key is the first line's item), so the line
        // has a failure record and counts in the run's failures by reason.
        await recordBadLine(
          run,
          {
            line: e.line,
            id,
            item: duplicateLineKey(e.line),
            reason: "duplicate-id",
            field: "id",
            message: `id ${JSON.stringify(id ?? key)} is already used by line ${sorted.firstLine}; expected an id unique within the run`,
          },
          e.ok
            ? { image: e.item.image, question: e.item.question, answer: e.item.answer ?? null }
            : { image: null, question: null, answer: null },
          deps,
          now(),
        );
        opts.onDuplicate?.({ line: e.line, id: id ?? key, firstLine: sorted.firstLine });
      } else if (!e.ok) {
        await recordBad(
          {
            line: e.line,
            id: e.id ?? null,
            item: key,
            reason: `manifest-${e.field.split(/[.[]/)[0]}`,
            field: e.field,
            message: e.message,
          },
          { image: null, question: null, answer: null },
        );
      } else {
        const mismatch = settingsMismatch(e.item.settings, meta.settings);
        const local = !e.item.image.startsWith("s3://") && !e.item.image.startsWith("data:");
        const who = `line ${e.line}, item ${JSON.stringify(e.item.id)}`;
        if (mismatch) {
          await recordBad(
            {
              line: e.line,
              id: e.item.id,
              item: key,
              reason: "manifest-settings",
              field: mismatch.field,
              message: `${who}, field "${mismatch.field}": got ${JSON.stringify(mismatch.got)}; expected ${JSON.stringify(mismatch.expected)}, the run's setting (a run has one set of settings: submit other settings as another run)`,
            },
            { image: e.item.image, question: e.item.question, answer: e.item.answer ?? null },
          );
        } else if (local && !opts.localImages) {
          await recordBad(
            {
              line: e.line,
              id: e.item.id,
              item: key,
              reason: "manifest-image",
              field: "image",
              message: `${who}, field "image": got the local path ${JSON.stringify(e.item.image)}; expected s3://bucket/key or a data: URL (a detached run is fed in the fleet, which cannot read this machine's files; submit without --detach)`,
            },
            { image: e.item.image, question: e.item.question, answer: e.item.answer ?? null },
          );
        } else {
          fresh.push({ entry: e, key, wasBad: sorted.wasBad });
        }
      }
    }

    const staged = await images.stageAll(
      fresh.map((f) => f.entry.item.image),
      opts.uploadConcurrency ?? 8,
    );
    const jobs: ReturnType<typeof requestJob>[] = [];
    const submitted: [string, number][] = [];
    const reexamined: string[] = [];
    for (const [i, { entry, key, wasBad }] of fresh.entries()) {
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
          {
            image: item.image.startsWith("data:") ? "(data: URL)" : item.image,
            question: item.question,
            answer: item.answer ?? null,
          },
        );
        continue;
      }
      if (wasBad) reexamined.push(key);
      jobs.push(
        requestJob(
          run,
          { key, id: item.id, image: s.uri, question: item.question, answer: item.answer ?? null, line },
          meta.settings,
        ),
      );
      submitted.push([key, line]);
    }
    const indexWritten = writeIndexChunk(store, run, { chunk: chunkNo, entries: index });
    indexWritten.catch(() => {}); // awaited below
    if (jobs.length > 0) {
      if (!(await waitForRoom(queues.request, jobs.length, backlog))) return false;
      for (const key of reexamined) await ledger.resetOutcome(run, key);
      await addInParts(queues.request, jobs);
      await ledger.markSubmitted(run, submitted);
      progress.enqueued += jobs.length;
      progress.backlog += jobs.length;
      metrics?.itemsSubmitted.inc({ outcome: "enqueued" }, jobs.length);
      if (state === "validating" || state === "completed") await move("in_progress");
    }
    await indexWritten;
    return true;
  };

  const chunkSize = meta.chunkSize;
  let position = 0;
  const chunk: ManifestEntry[] = [];
  let stopped = false;
  /** Feeds the entries up to manifest position `end`; false when the feeder has to stop. */
  const flush = async (entries: ManifestEntry[], end: number, atEnd: boolean) => {
    const current = await runs.state(run, 0);
    if (current === "cancelled" || current === "failed") {
      state = current;
      return false;
    }
    const ok = await processChunk(entries, Math.floor((end - entries.length) / chunkSize));
    if (!ok) return false;
    progress.lines += entries.length;
    await runs.advanceFeed(run, {
      cursor: end,
      enqueued: progress.enqueued - counted.enqueued,
      bad: progress.bad - counted.bad,
      skipped: progress.skipped - counted.skipped,
      duplicates: progress.duplicates - counted.duplicates,
    });
    counted = { ...progress };
    report();
    const bad = meta.bad + progress.bad;
    if (meta.badLineLimit && overBadLineLimit(meta.badLineLimit, bad, end, atEnd)) {
      await move("failed", `too many bad lines: ${bad} of ${end} read, over the limit of ${describeLimit(meta.badLineLimit)}`);
      return false;
    }
    return true;
  };

  // One chunk is fed while the next one is read and checked; chunks are fed one after the
  // other, so each sees the ledger as the one before left it.
  let inFlight: Promise<boolean> | null = null;
  let feedError: unknown;
  const settle = async () => {
    const p = inFlight;
    inFlight = null;
    return p === null ? true : await p;
  };
  try {
    for await (const entry of entries) {
      position++;
      if (position <= resumedAt) continue;
      chunk.push(entry);
      if (position % chunkSize === 0) {
        if (!(await settle()) || opts.signal?.aborted) {
          stopped = true;
          break;
        }
        inFlight = flush(chunk.splice(0), position, false).catch((err: unknown) => {
          feedError = err;
          return false;
        });
      }
    }
  } catch (err) {
    await settle();
    if (feedError !== undefined) throw feedError;
    await move("failed", `the manifest cannot be read: ${(err as Error).message}`);
    return summary();
  }
  if (!(await settle())) stopped = true;
  if (feedError !== undefined) throw feedError;
  if (!stopped && chunk.length > 0) stopped = !(await flush(chunk.splice(0), position, true));
  interrupted = stopped && state !== "failed" && state !== "cancelled";
  if (!stopped) {
    const enqueuedEver = meta.enqueued + progress.enqueued;
    if (enqueuedEver === 0 && meta.skipped + progress.skipped === 0) {
      await move(
        "failed",
        position === 0
          ? "the manifest has no lines"
          : `no line of the manifest could be enqueued (${meta.bad + progress.bad} bad)`,
      );
    } else if (await runs.finishFeed(run, now())) {
      state = "completed";
      await mirrorRunState(store, run, { state, reason: "", updatedAt: now() }).catch(() => {});
    } else {
      state = (await runs.state(run, 0)) ?? state;
    }
  }
  return summary();
}
