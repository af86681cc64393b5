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
import type { Readable } from "node:stream";
import type { Logger } from "../../../shared/io/logging.ts";
import { ImageResolver, readImageFolder, readManifestStream, type ManifestEntry } from "../../../shared/io/manifest.ts";
import { imageBase, openManifest } from "../../../shared/io/manifest-source.ts";
import { ignoredFieldNote } from "../../../shared/io/openai-batch.ts";
import type { S3Store } from "../../../shared/io/storage/s3-store.ts";
import { waitForRoom, type BacklogOptions } from "./backpressure.ts";
import { recordBadLine, type BadLine } from "./bad-lines.ts";
import { addInParts } from "./bulk-add.ts";
import { duplicateLineKey, sortChunk } from "./dedup.ts";
import type { ProducerMetrics } from "./producer-metrics.ts";
import { ImageStager } from "./image-staging.ts";
import { type FailureRecord, failureInput, type FleetQueues, requestJob } from "../protocol/index.ts";
import {
  type BadLineLimit,
  RunKeeper,
  type RunLedger,
  type RunMeta,
  type RunRegistry,
  type RunSource,
  type RunState,
  TERMINAL_STATES,
  FEEDER_BEAT_MS,
} from "../books/index.ts";
import { writeIndexChunk, type IndexChunk, type IndexEntry } from "./run-index.ts";
import { lineVerdict, type LineVerdict } from "./line-verdict.ts";

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
  /** A body field the manifest's lines give that is not honoured: once per field per feeder. */
  onWarning?(message: string): void;
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
  return openManifest(source.manifest, {
    format: source.format,
    store: deps.store,
    ...(opts.stdin ? { stdin: opts.stdin } : {}),
  }).then((m) => readManifestStream(m.stream, m.format, runImages(source, opts.localImages)));
}

/**
 * A run's image references as its submit meant them: relative paths from the base (the
 * manifest's folder, stdin's directory), confined to the image root (the base unless
 * `--image-root` widened it), through symlinks too when `checkFiles`.
 */
export function runImages(source: RunSource, checkFiles: boolean): ImageResolver {
  const base = source.base ?? imageBase(source.manifest);
  return new ImageResolver(source.imageRoot ?? base, checkFiles, base);
}

/**
 * Feeds the run's manifest from its cursor, keeping the run's feeder heartbeat while it does, so
 * that `status` can tell a submit that is feeding from one whose process died.
 */
export async function feedRun(run: string, deps: FeedDeps, opts: FeedOptions): Promise<FeedSummary> {
  const meta = await deps.runs.get(run);
  if (!meta) throw new Error(`run ${run} does not exist`);
  const now = deps.now ?? Date.now;
  const beat = () =>
    deps.runs.beat(run, now()).catch((err: Error) => deps.logger.warn({ run, err: err.message }, "feeder heartbeat failed"));
  await beat();
  const timer = setInterval(beat, FEEDER_BEAT_MS);
  timer.unref();
  try {
    return await new Feeder(run, meta, deps, opts).feed();
  } finally {
    clearInterval(timer);
    await deps.runs.beat(run, 0).catch(() => {});
  }
}

/** One feeder of one run: its progress, and the run's state as it last saw it. */
class Feeder {
  private readonly now: () => number;
  private readonly keeper: RunKeeper;
  private readonly images: ImageStager;
  private readonly progress: FeedProgress;
  /** The progress already added to the run's meta hash. */
  private counted: FeedProgress;
  private readonly backlog: BacklogOptions;
  private state: RunState;
  private reason: string;
  private interrupted = false;
  /** Body fields already warned about (one warning per field per feeder). */
  private readonly warned = new Set<string>();

  constructor(
    private readonly run: string,
    private readonly meta: RunMeta,
    private readonly deps: FeedDeps,
    private readonly opts: FeedOptions,
  ) {
    this.now = deps.now ?? Date.now;
    this.keeper = new RunKeeper(deps, (r, err) =>
      deps.logger.warn({ run: r, err: err.message }, "could not mirror the run's state to S3"),
    );
    this.images = new ImageStager(deps.store, deps.metrics);
    this.progress = {
      lines: 0,
      resumedAt: meta.cursor,
      enqueued: 0,
      skipped: 0,
      bad: 0,
      duplicates: 0,
      backlog: 0,
      throttled: false,
    };
    this.counted = { ...this.progress };
    this.backlog = {
      maxBacklog: meta.maxBacklog,
      pollMs: opts.backlogPollMs ?? 500,
      ...(opts.signal ? { signal: opts.signal } : {}),
      onBacklog: (n, throttled) => {
        this.progress.backlog = n;
        if (throttled !== this.progress.throttled) {
          this.progress.throttled = throttled;
          this.report();
        }
      },
    };
    this.state = meta.state;
    this.reason = meta.reason;
  }

  /** Feeds the manifest from the run's cursor to its end, or until the run stops or the feeder is aborted. */
  async feed(): Promise<FeedSummary> {
    if (TERMINAL_STATES.includes(this.state) && this.state !== "completed") return this.summary();
    let entries: AsyncIterable<ManifestEntry>;
    try {
      entries = await openEntries(this.meta, this.deps, this.opts);
    } catch (err) {
      await this.move("failed", `the manifest cannot be read: ${(err as Error).message}`);
      return this.summary();
    }
    this.report();
    const fed = await this.feedChunks(entries);
    if (fed === "unreadable") return this.summary();
    this.interrupted = fed.stopped && this.state !== "failed" && this.state !== "cancelled";
    if (!fed.stopped) await this.finish(fed.position);
    return this.summary();
  }

  /**
   * Reads the entries in chunks from the cursor on. One chunk is fed while the next one is read
   * and checked; chunks are fed one after the other, so each sees the ledger as the one before
   * left it. "unreadable": the manifest broke off (the run has failed).
   */
  private async feedChunks(
    entries: AsyncIterable<ManifestEntry>,
  ): Promise<{ stopped: boolean; position: number } | "unreadable"> {
    const { chunkSize } = this.meta;
    let position = 0;
    const chunk: ManifestEntry[] = [];
    let stopped = false;
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
        if (position <= this.progress.resumedAt) continue;
        chunk.push(entry);
        if (position % chunkSize === 0) {
          if (!(await settle()) || this.opts.signal?.aborted) {
            stopped = true;
            break;
          }
          inFlight = this.flush(chunk.splice(0), position, false).catch((err: unknown) => {
            feedError = err;
            return false;
          });
        }
      }
    } catch (err) {
      await settle();
      if (feedError !== undefined) throw feedError;
      await this.move("failed", `the manifest cannot be read: ${(err as Error).message}`);
      return "unreadable";
    }
    if (!(await settle())) stopped = true;
    if (feedError !== undefined) throw feedError;
    if (!stopped && chunk.length > 0)
      stopped = this.opts.signal?.aborted === true || !(await this.flush(chunk.splice(0), position, true));
    return { stopped, position };
  }

  /** Feeds the entries up to manifest position `end`, then moves the cursor; false when the feeder has to stop. */
  private async flush(entries: ManifestEntry[], end: number, atEnd: boolean): Promise<boolean> {
    const { run, meta, progress } = this;
    const current = await this.deps.runs.state(run, 0);
    if (current === "cancelled" || current === "failed") {
      this.state = current;
      return false;
    }
    if (!(await this.feedChunk(entries, Math.floor((end - entries.length) / meta.chunkSize)))) return false;
    progress.lines += entries.length;
    await this.deps.runs.advanceFeed(run, {
      cursor: end,
      enqueued: progress.enqueued - this.counted.enqueued,
      bad: progress.bad - this.counted.bad,
      skipped: progress.skipped - this.counted.skipped,
      duplicates: progress.duplicates - this.counted.duplicates,
    });
    this.counted = { ...progress };
    this.report();
    const bad = meta.bad + progress.bad;
    if (meta.badLineLimit && overBadLineLimit(meta.badLineLimit, bad, end, atEnd)) {
      await this.move(
        "failed",
        `too many bad lines: ${bad} of ${end} read, over the limit of ${describeLimit(meta.badLineLimit)}`,
      );
      return false;
    }
    return true;
  }

  /** One chunk: each line decided (line-verdict.ts), then recorded or enqueued; false when it had to stop. */
  private async feedChunk(chunk: ManifestEntry[], chunkNo: number): Promise<boolean> {
    const header = chunk.find((e) => !e.ok && e.field === "header");
    if (header && !header.ok) {
      // Not an item: the run cannot proceed at all.
      await this.move("failed", header.message);
      return false;
    }
    const { run, progress } = this;
    const metrics = this.deps.metrics;
    const index: IndexEntry[] = [];
    const fresh: Extract<LineVerdict, { kind: "fresh" }>[] = [];
    for (const sorted of await sortChunk(run, chunk, this.deps.ledger)) {
      const { entry: e, key } = sorted;
      const id = e.ok ? e.item.id : (e.id ?? null);
      index.push([e.line, sorted.kind === "duplicate" ? duplicateLineKey(e.line) : key, id]);
      if (e.ok) this.warnIgnored(e.item.ignored ?? []);
      const verdict = lineVerdict(sorted, this.meta.settings, this.opts.localImages);
      switch (verdict.kind) {
        case "skipped":
          progress.skipped++;
          metrics?.itemsSubmitted.inc({ outcome: "skipped" });
          break;
        case "duplicate":
          progress.duplicates++;
          metrics?.itemsSubmitted.inc({ outcome: "duplicate" });
          await recordBadLine(run, verdict.bad, verdict.input, this.books(), this.now());
          this.opts.onDuplicate?.({ line: e.line, id: id ?? key, firstLine: verdict.firstLine });
          break;
        case "bad":
          await this.recordBad(verdict.bad, verdict.input);
          break;
        case "fresh":
          fresh.push(verdict);
      }
    }
    return this.enqueue(fresh, { chunk: chunkNo, entries: index });
  }

  /**
   * Stages the fresh lines' images, writes the chunk's index and adds their request jobs under
   * backpressure; false when aborted while waiting.
   */
  private async enqueue(fresh: Extract<LineVerdict, { kind: "fresh" }>[], index: IndexChunk): Promise<boolean> {
    const { run, progress, deps } = this;
    const staged = await this.images.stageAll(
      fresh.map((f) => f.entry.item.image),
      this.opts.uploadConcurrency ?? 8,
    );
    const jobs: ReturnType<typeof requestJob>[] = [];
    const submitted: [string, number][] = [];
    const reexamined: string[] = [];
    for (const [i, { entry, key, wasBad }] of fresh.entries()) {
      const s = staged[i]!;
      const { item, line } = entry;
      if ("error" in s) {
        await this.recordBad(
          {
            line,
            id: item.id,
            item: key,
            reason: "image-unreadable",
            field: "image",
            message: `line ${line}, item ${JSON.stringify(item.id)}, field "image": ${s.error}`,
          },
          failureInput({
            ...item,
            image: item.image.startsWith("data:") ? "(data: URL)" : item.image,
            answer: item.answer ?? null,
          }),
        );
        continue;
      }
      if (wasBad) reexamined.push(key);
      jobs.push(
        requestJob(
          run,
          {
            key,
            id: item.id,
            image: s.uri,
            question: item.question,
            answer: item.answer ?? null,
            line,
            ...(item.system !== undefined ? { system: item.system } : {}),
            ...(item.settings !== undefined ? { settings: item.settings } : {}),
          },
          this.meta.settings,
        ),
      );
      submitted.push([key, line]);
    }
    const indexWritten = writeIndexChunk(deps.store, run, index);
    indexWritten.catch(() => {}); // awaited below
    // Interrupted while the chunk was read and its images staged: none of it is enqueued, and
    // a resumed feeder looks at the whole chunk again.
    if (this.opts.signal?.aborted) {
      await indexWritten;
      return false;
    }
    if (jobs.length > 0) {
      if (!(await waitForRoom(deps.queues.request, jobs.length, this.backlog))) return false;
      for (const key of reexamined) await deps.ledger.resetOutcome(run, key);
      await addInParts(deps.queues.request, jobs);
      await deps.ledger.markSubmitted(run, submitted);
      progress.enqueued += jobs.length;
      progress.backlog += jobs.length;
      deps.metrics?.itemsSubmitted.inc({ outcome: "enqueued" }, jobs.length);
      if (this.state === "validating" || this.state === "completed") await this.move("in_progress");
    }
    await indexWritten;
    return true;
  }

  /** The manifest was read to its end: the run fails when nothing of it could be enqueued, else its feed is done. */
  private async finish(position: number): Promise<void> {
    const { meta, progress } = this;
    if (meta.enqueued + progress.enqueued === 0 && meta.skipped + progress.skipped === 0) {
      await this.move(
        "failed",
        position === 0
          ? "the manifest has no lines"
          : `no line of the manifest could be enqueued (${meta.bad + progress.bad} bad)`,
      );
    } else if (await this.keeper.finishFeed(this.run, this.now())) {
      this.state = "completed";
    } else {
      this.state = (await this.deps.runs.state(this.run, 0)) ?? this.state;
    }
  }

  /** Says once per field what the lines give that is not honoured: to the user who submits, or to the log of the worker that feeds a detached run. */
  private warnIgnored(fields: readonly string[]): void {
    for (const field of fields) {
      if (this.warned.has(field)) continue;
      this.warned.add(field);
      if (this.opts.onWarning) this.opts.onWarning(ignoredFieldNote(field));
      else this.deps.logger.warn({ run: this.run, field }, ignoredFieldNote(field));
    }
  }

  private books() {
    return { store: this.deps.store, ledger: this.deps.ledger, keeper: this.keeper };
  }

  private async recordBad(b: BadLine, input: FailureRecord["input"]): Promise<void> {
    await recordBadLine(this.run, b, input, this.books(), this.now());
    this.progress.bad++;
    this.deps.metrics?.itemsSubmitted.inc({ outcome: "bad" });
    this.opts.onBadLine?.(b);
  }

  private async move(to: RunState, why = ""): Promise<void> {
    if ((await this.keeper.move(this.run, to, why, this.now())) === null) return;
    this.state = to;
    this.reason = why;
  }

  private report(): void {
    this.opts.onProgress?.({ ...this.progress });
  }

  private summary(): FeedSummary {
    const { throttled: _t, ...counts } = this.progress;
    const { images, interrupted, state, reason } = this;
    return { ...counts, imagesUploaded: images.uploaded, imagesReused: images.reused, interrupted, state, reason };
  }
}
