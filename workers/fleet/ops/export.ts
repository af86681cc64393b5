/**
 * `stagebeam export`: a run's answers as two files, an output file and an error file, one line
 * per item keyed by its id as the manifest wrote it (`custom_id` in the OpenAI format), in
 * manifest order; each output line holds the answer, the four stages and a pointer to the
 * item's full trace (runs/<run>/results/<item>.json).
 *
 * The order comes from the run's index (feed/run-index.ts), the outcomes from the ledger; records
 * are fetched a few at a time, one index chunk in memory at once, so memory does not grow with
 * the run. Each file is written on its own pass with its own checkpoint: a local file keeps
 * `<file>.progress.json` (cursor and byte length; a resumed export cuts the file back to it),
 * an S3 file is a multipart upload whose id, parts and cursor are kept in Redis after every
 * part, so an export that died resumes from its last part. With `follow` it waits for items
 * to finish and writes them as the run completes, ending when the run is over.
 *
 * Lines whose id repeats an earlier line's are not items of their own and are not exported
 * (submit reported them); items that never finished in a cancelled run go to the error file
 * with their reason, or `not-finished`.
 */
import { open, readFile, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { type FailureRecord, FailureRecordSchema, type FleetRedis, type ResultRecord, runKeys } from "../protocol/index.ts";
import pLimit from "p-limit";
import { z } from "zod";
import { UsageError } from "../../../shared/core/usage-error.ts";
import {
  failureKey,
  MULTIPART_PART_BYTES,
  parseS3Uri,
  resultKey,
  type MultipartState,
  type S3Store,
} from "../../../shared/io/storage/s3-store.ts";
import type { Outcome, RunLedger, RunRegistry } from "../books/index.ts";
import { readIndex, type IndexEntry } from "../feed/index.ts";

export const EXPORT_FORMATS = ["openai", "jsonl"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
type FileKind = "output" | "errors";

/** Where a pass stands: the next index chunk and the entry in it. */
const CursorSchema = z.object({ chunk: z.number().int().nonnegative(), entry: z.number().int().nonnegative() });
type Cursor = z.infer<typeof CursorSchema>;

export interface ExportOptions {
  format: ExportFormat;
  /** A local path or s3://bucket/key of the output file; the error file is named after it (`.errors`). */
  out: string;
  /** Wait for unfinished items and end when the run is over (default: stop at the first unfinished one). */
  follow?: boolean;
  pollMs?: number;
  signal?: AbortSignal;
  /** Once the run is over and exported, its Redis bookkeeping expires after this long (default 7 days). */
  retentionSeconds?: number;
}

export const DEFAULT_RETENTION_SECONDS = 7 * 24 * 3_600;

export interface ExportSummary {
  files: { output: string; errors: string };
  lines: { output: number; errors: number };
  /** Every item of the run was written (false: stopped at an unfinished one). */
  complete: boolean;
}

export interface ExportDeps {
  store: S3Store;
  ledger: RunLedger;
  runs: RunRegistry;
  redis: FleetRedis;
  prefix: string;
}

/** The error file's name next to the output file's: `a.jsonl` → `a.errors.jsonl`. */
export function errorsPathOf(out: string): string {
  const m = /^(.*?)(\.jsonl|\.json|\.ndjson)?$/.exec(out)!;
  return `${m[1]}.errors${m[2] ?? ".jsonl"}`;
}

// ---------------------------------------------------------------------------
// Lines

const stagesOf = (r: ResultRecord) => ({
  SUMMARY: r.search.stages.SUMMARY ?? null,
  CAPTION: r.search.stages.CAPTION ?? null,
  REASONING: r.search.stages.REASONING ?? null,
  CONCLUSION: r.search.stages.CONCLUSION ?? null,
});

function outputLine(format: ExportFormat, r: ResultRecord, trace: string): unknown {
  const stagebeam = { answer: r.answer, stages: stagesOf(r), correct: r.correct, gold: r.gold, trace };
  if (format === "jsonl") return { id: r.id, line: r.line, item: r.item, ...stagebeam, tokens: r.tokens.generated };
  return {
    id: `batch_req_${r.item}`,
    custom_id: r.id,
    response: {
      status_code: 200,
      request_id: `${r.run}/${r.item}`,
      body: {
        id: `chatcmpl-${r.item}`,
        object: "chat.completion",
        created: Math.floor(Date.parse(r.timings.finishedAt) / 1000),
        model: r.model.id,
        choices: [{ index: 0, message: { role: "assistant", content: r.search.text }, logprobs: null, finish_reason: "stop" }],
        stagebeam,
      },
    },
    error: null,
  };
}

function errorLine(
  format: ExportFormat,
  e: { id: string; item: string; line: number; reason: string; message: string; trace: string | null },
): unknown {
  if (format === "jsonl") return e;
  return { id: `batch_req_${e.item}`, custom_id: e.id, response: null, error: { code: e.reason, message: e.message } };
}

// ---------------------------------------------------------------------------
// Sinks: a local file or an S3 multipart upload, each with a checkpoint

interface Sink {
  readonly name: string;
  /** Where the last checkpoint left the pass. */
  cursor: Cursor;
  lines: number;
  append(line: string): void;
  /** Makes everything appended durable if enough has gathered (always with `force`), recording `cursor`. */
  checkpoint(cursor: Cursor, force: boolean): Promise<void>;
  /** The file is whole: complete it. */
  finish(): Promise<void>;
  /** Stop without finishing (the checkpoint stays for a resumed export). */
  close(): Promise<void>;
}

const LOCAL_FLUSH_BYTES = 1 * 2 ** 20;

async function localSink(path: string): Promise<Sink> {
  const progressPath = `${path}.progress.json`;
  const saved = await readFile(progressPath, "utf8").then(
    (t) => z.object({ cursor: CursorSchema, bytes: z.number().int(), lines: z.number().int() }).parse(JSON.parse(t)),
    () => null,
  );
  const file = await open(path, saved ? "r+" : "w");
  if (saved) await file.truncate(saved.bytes);
  let bytes = saved?.bytes ?? 0;
  let pending: string[] = [];
  let pendingBytes = 0;
  const sink: Sink = {
    name: path,
    cursor: saved?.cursor ?? { chunk: 0, entry: 0 },
    lines: saved?.lines ?? 0,
    append(line) {
      pending.push(line);
      pendingBytes += Buffer.byteLength(line);
      sink.lines++;
    },
    async checkpoint(cursor, force) {
      if (!force && pendingBytes < LOCAL_FLUSH_BYTES) return;
      const text = pending.join("");
      await file.write(text, bytes);
      bytes += Buffer.byteLength(text);
      pending = [];
      pendingBytes = 0;
      sink.cursor = cursor;
      await writeFile(progressPath, JSON.stringify({ cursor, bytes, lines: sink.lines }));
    },
    async finish() {
      await file.close();
      await rm(progressPath, { force: true });
    },
    close: () => file.close(),
  };
  return sink;
}

const S3SinkStateSchema = z.object({
  cursor: CursorSchema,
  lines: z.number().int(),
  upload: z.object({
    key: z.string(),
    uploadId: z.string(),
    parts: z.array(z.object({ PartNumber: z.number(), ETag: z.string() })),
  }),
});

async function s3Sink(key: string, run: string, deps: ExportDeps): Promise<Sink> {
  const stateKey = `${runKeys(deps.prefix, run).meta}:export`;
  const raw = await deps.redis.hget(stateKey, key);
  const saved = raw ? S3SinkStateSchema.parse(JSON.parse(raw)) : null;
  const upload: MultipartState = saved?.upload ?? (await deps.store.startMultipart(key, "application/x-ndjson"));
  let pending: string[] = [];
  let pendingBytes = 0;
  let linesAtPart = saved?.lines ?? 0;
  const sink: Sink = {
    name: deps.store.uri(key),
    cursor: saved?.cursor ?? { chunk: 0, entry: 0 },
    lines: linesAtPart,
    append(line) {
      pending.push(line);
      pendingBytes += Buffer.byteLength(line);
      sink.lines++;
    },
    async checkpoint(cursor, force) {
      // Every part but the last must be big enough for S3; the last one is written by finish().
      if (pendingBytes < MULTIPART_PART_BYTES && !(force && pendingBytes === 0)) return;
      if (pendingBytes > 0) await deps.store.uploadPart(upload, Buffer.from(pending.join("")));
      pending = [];
      pendingBytes = 0;
      linesAtPart = sink.lines;
      sink.cursor = cursor;
      await deps.redis.hset(stateKey, key, JSON.stringify({ cursor, lines: linesAtPart, upload }));
    },
    async finish() {
      if (pendingBytes > 0) await deps.store.uploadPart(upload, Buffer.from(pending.join("")));
      await deps.store.completeMultipart(upload);
      await deps.redis.hdel(stateKey, key);
    },
    close: async () => {},
  };
  return sink;
}

async function openSink(target: string, run: string, deps: ExportDeps): Promise<Sink> {
  if (!target.startsWith("s3://")) return localSink(target);
  const where = parseS3Uri(target);
  if (!where) throw new UsageError(`--out ${target} is not an s3://bucket/key URI`);
  if (where.bucket !== deps.store.bucket)
    throw new UsageError(`--out ${target}: the fleet writes to its own bucket ${deps.store.bucket} only`);
  return s3Sink(where.key, run, deps);
}

// ---------------------------------------------------------------------------
// One pass

const isSuccess = (o: Outcome) => o === "c" || o === "w" || o === "d";

async function exportPass(run: string, kind: FileKind, sink: Sink, opts: ExportOptions, deps: ExportDeps): Promise<boolean> {
  const limit = pLimit(16);
  const traceUri = (item: string) => deps.store.uri(kind === "output" ? resultKey(run, item) : failureKey(run, item));
  const write = async (entries: IndexEntry[], outcomes: (Outcome | null)[], runOver: boolean) => {
    const lines = await Promise.all(
      entries.map(([line, item, id], i) =>
        limit(async (): Promise<unknown> => {
          const outcome = outcomes[i] ?? null;
          if (outcome !== null && isSuccess(outcome)) {
            if (kind !== "output") return null;
            const r = await deps.store.getJson<ResultRecord>(resultKey(run, item));
            if (!r) throw new Error(`run ${run}: item ${item} is done but its result ${resultKey(run, item)} is not in S3`);
            return outputLine(opts.format, r, traceUri(item));
          }
          if (kind !== "errors") return null;
          const key = id ?? item;
          if (outcome === null) {
            if (!runOver) return null;
            return errorLine(opts.format, {
              id: key,
              item,
              line,
              reason: "not-finished",
              message: `the run ended before item ${key} finished`,
              trace: null,
            });
          }
          const f: FailureRecord | undefined = await deps.store.getJson(failureKey(run, item), FailureRecordSchema);
          return errorLine(opts.format, {
            id: key,
            item,
            line,
            reason: outcome.slice(2),
            message: f?.message ?? `failed: ${outcome.slice(2)}`,
            trace: f ? traceUri(item) : null,
          });
        }),
      ),
    );
    for (const l of lines) if (l !== null) sink.append(`${JSON.stringify(l)}\n`);
  };

  // Where this pass has got to; the sink's cursor is where its last checkpoint made it durable.
  let position = sink.cursor;
  for (;;) {
    let stopped = false;
    const state = await deps.runs.state(run, 0);
    const runOver = state === "completed" || state === "cancelled" || state === "failed";
    for await (const chunk of readIndex(deps.store, run, position.chunk)) {
      const from = chunk.chunk === position.chunk ? position.entry : 0;
      const all = chunk.entries.slice(from);
      const outcomes = await deps.ledger.outcomesOf(
        run,
        all.map((e) => e[1]),
      );
      // Only up to the first item not finished yet, unless the run is over.
      const firstOpen = runOver ? -1 : all.findIndex((_, i) => outcomes[i] === null);
      const upTo = firstOpen >= 0 ? firstOpen : all.length;
      await write(all.slice(0, upTo), outcomes.slice(0, upTo), runOver);
      position = upTo < all.length ? { chunk: chunk.chunk, entry: from + upTo } : { chunk: chunk.chunk + 1, entry: 0 };
      await sink.checkpoint(position, false);
      if (upTo < all.length) {
        stopped = true;
        break;
      }
    }
    if (!stopped && runOver) {
      await sink.checkpoint(position, true);
      return true;
    }
    if (!opts.follow || opts.signal?.aborted) {
      await sink.checkpoint(position, true);
      return false;
    }
    await sleep(opts.pollMs ?? 2_000, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => {});
  }
}

export async function exportRun(run: string, opts: ExportOptions, deps: ExportDeps): Promise<ExportSummary> {
  const meta = await deps.runs.get(run);
  if (!meta) throw new UsageError(`no run named ${JSON.stringify(run)} in Redis`);
  const targets = { output: opts.out, errors: errorsPathOf(opts.out) };
  const [output, errors] = await Promise.all([openSink(targets.output, run, deps), openSink(targets.errors, run, deps)]);
  const [outDone, errDone] = await Promise.all([
    exportPass(run, "output", output, opts, deps),
    exportPass(run, "errors", errors, opts, deps),
  ]);
  const complete = outDone && errDone;
  if (complete) {
    await Promise.all([output.finish(), errors.finish()]);
    await deps.runs.markExported(run, opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS);
  } else {
    await Promise.all([output.close(), errors.close()]);
  }
  return { files: { output: output.name, errors: errors.name }, lines: { output: output.lines, errors: errors.lines }, complete };
}
