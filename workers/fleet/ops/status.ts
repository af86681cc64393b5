/**
 * A run's progress (`stagebeam status`), its records streamed from S3 (`stagebeam results`),
 * and waiting for a run to finish (`stagebeam demo`, `submit --wait`).
 *
 * Throughput counts only items that workers finished (not lines refused at submit), over a
 * sliding window of the last minute; with nothing finished in it there is no throughput and no
 * ETA, and the status says whether any worker is connected at all.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { formatDuration } from "../../../shared/core/duration.ts";
import { wilson95 } from "../../../shared/core/eval/stats.ts";
import { failuresPrefix, manifestKey, resultsPrefix, type S3Store } from "../../../shared/io/storage/s3-store.ts";
import type { RunCounts, RunLedger, RunMeta, RunRegistry } from "../books/index.ts";
import { type FleetQueues, type RunManifest, RunManifestSchema } from "../protocol/index.ts";

/** The BullMQ states `status` reports for each queue. */
export const QUEUE_STATES = ["waiting", "prioritized", "active", "delayed", "waiting-children", "completed", "failed"] as const;

/** The sliding window of throughput and ETA. */
export const THROUGHPUT_WINDOW_MS = 60_000;

/** The run's request jobs in the queue, by state (found by their ids, which start with the run). */
export interface RunBacklog {
  waiting: number;
  active: number;
  waitingChildren: number;
  delayed: number;
}

export interface RunStatus {
  run: string;
  manifest: RunManifest | null;
  meta: RunMeta | null;
  counts: RunCounts;
  /** Items finished either way (results + failures, bad manifest lines included). */
  finished: number;
  pending: number;
  done: boolean;
  /** Items finished by workers per second over the last minute; null when none finished in it. */
  throughput: number | null;
  etaSeconds: number | null;
  /** Workers connected to the request queue (null when the queues were not asked). */
  workers: number | null;
  /** Why there is no throughput, when work is pending. */
  stalled: string | null;
  accuracy: { correct: number; graded: number; rate: number; ci95: [number, number] } | null;
  backlog: RunBacklog | null;
  /** Job counts of the queues by state (the queues are shared by every run). */
  queues: Record<string, Record<string, number>>;
  at: string;
}

type StatusQueues = Pick<FleetQueues, "all" | "request">;

/** The run's own request jobs by state; O(jobs in the queue), which backpressure keeps small. */
export async function runBacklog(queue: FleetQueues["request"], run: string): Promise<RunBacklog> {
  const head = `${run}/`;
  const count = async (state: "wait" | "active" | "waiting-children" | "delayed" | "prioritized") =>
    (await queue.getRanges([state], 0, -1)).filter((id) => id.startsWith(head)).length;
  const [wait, prioritized, active, waitingChildren, delayed] = await Promise.all([
    count("wait"),
    count("prioritized"),
    count("active"),
    count("waiting-children"),
    count("delayed"),
  ]);
  return { waiting: wait + prioritized, active, waitingChildren, delayed };
}

export async function runStatus(
  run: string,
  deps: { store: S3Store; ledger: RunLedger; runs?: RunRegistry; queues?: StatusQueues },
  now = Date.now(),
): Promise<RunStatus> {
  const windowStart = now - THROUGHPUT_WINDOW_MS;
  const [manifest, meta, counts, recent, queues, backlog, workers] = await Promise.all([
    deps.store.getJson(manifestKey(run), RunManifestSchema),
    deps.runs ? deps.runs.get(run) : Promise.resolve(null),
    deps.ledger.counts(run),
    deps.ledger.completedSince(run, windowStart),
    deps.queues ? queueCounts(deps.queues.all) : Promise.resolve({}),
    deps.queues ? runBacklog(deps.queues.request, run) : Promise.resolve(null),
    deps.queues ? deps.queues.request.getWorkersCount() : Promise.resolve(null),
  ]);
  const finished = counts.completed + counts.failed;
  const pending = Math.max(0, counts.items - finished);
  const done = meta
    ? meta.state === "completed" || meta.state === "cancelled" || meta.state === "failed"
    : counts.items > 0 && pending === 0;
  // The window starts no earlier than the first step a worker ran.
  const from = Math.max(windowStart, counts.workStartedAt ?? now);
  const span = (now - from) / 1000;
  const throughput = !done && recent > 0 && span > 0 ? recent / span : null;
  let stalled: string | null = null;
  if (!done && pending > 0 && throughput === null) {
    stalled =
      workers === 0
        ? "no workers are taking jobs"
        : `no item finished in the last ${THROUGHPUT_WINDOW_MS / 1000} s${workers !== null ? ` (${workers} worker connection${workers === 1 ? "" : "s"})` : ""}`;
  }
  const graded = counts.correct + counts.wrong;
  return {
    run,
    manifest: manifest ?? null,
    meta,
    counts,
    finished,
    pending,
    done,
    throughput,
    etaSeconds: done ? 0 : throughput !== null ? pending / throughput : null,
    workers,
    stalled,
    accuracy:
      graded > 0
        ? { correct: counts.correct, graded, rate: counts.correct / graded, ci95: wilson95(counts.correct, graded) }
        : null,
    backlog,
    queues,
    at: new Date(now).toISOString(),
  };
}

/** Job counts of each queue by state. */
export async function queueCounts(
  queues: readonly { name: string; getJobCounts(...t: string[]): Promise<Record<string, number>> }[],
) {
  const out: Record<string, Record<string, number>> = {};
  for (const q of queues) out[q.name] = await q.getJobCounts(...QUEUE_STATES);
  return out;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function formatStatus(s: RunStatus): string {
  const lines: string[] = [];
  const set = s.manifest?.settings ?? s.meta?.settings;
  lines.push(`run        ${s.run}${s.manifest ? `  (created ${s.manifest.createdAt})` : "  (no run manifest in S3)"}`);
  if (s.meta) {
    const m = s.meta;
    const feed = m.fed === "1" ? "manifest fed to the end" : `feeding: ${m.cursor} lines read`;
    lines.push(`state      ${m.state}${m.reason ? ` — ${m.reason}` : ""} · ${feed}${m.source.detached ? " (detached)" : ""}`);
  }
  if (set) {
    lines.push(
      `settings   strategy ${set.strategy} · beam ${set.beam} · judge ${set.judgeMode} · seed ${set.seed} · max stage tokens ${set.maxStageTokens}`,
    );
  }
  const c = s.counts;
  lines.push(
    `items      ${c.items} submitted · ${c.completed} completed · ${c.failed} failed · ${s.pending} pending${s.done ? "  — done" : ""}`,
  );
  const eta = s.done ? "done" : s.etaSeconds !== null ? formatDuration(s.etaSeconds) : "—";
  lines.push(
    `throughput ${s.throughput !== null ? `${s.throughput.toFixed(2)} items/s (last minute)` : "—"} · ETA ${eta} · ${c.tokens} tokens generated${s.stalled ? `  — ${s.stalled}` : ""}`,
  );
  if (s.backlog) {
    const b = s.backlog;
    lines.push(
      `backlog    ${b.waiting} waiting · ${b.active} active · ${b.waitingChildren} waiting for children · ${b.delayed} delayed (this run's request jobs)`,
    );
  }
  if (s.accuracy) {
    const a = s.accuracy;
    lines.push(`accuracy   ${a.correct}/${a.graded} = ${pct(a.rate)}  [95% CI ${pct(a.ci95[0])}, ${pct(a.ci95[1])}]`);
  } else {
    lines.push(`accuracy   — (no gold answers among finished items)`);
  }
  const reasons = Object.entries(c.failedByReason).sort((a, b) => b[1] - a[1]);
  lines.push(`failures   ${reasons.length === 0 ? "none" : reasons.map(([r, n]) => `${r}: ${n}`).join(" · ")}`);
  const qs = Object.entries(s.queues);
  if (qs.length > 0) {
    lines.push("queues     (shared by all runs)");
    for (const [q, counts] of qs) {
      const parts = QUEUE_STATES.map((st) => `${st} ${counts[st] ?? 0}`);
      lines.push(`  ${q.padEnd(9)}${parts.join(" · ")}`);
    }
  }
  return lines.join("\n");
}

/**
 * Every record of a run (results or failures), in key order, as one-line JSON strings; S3 is
 * listed a page at a time and objects are fetched a few at a time, in order.
 */
export async function* streamRecords(
  store: S3Store,
  run: string,
  which: "results" | "failed",
  concurrency = 8,
): AsyncGenerator<string> {
  const prefix = which === "results" ? resultsPrefix(run) : failuresPrefix(run);
  const inflight: Promise<string | null>[] = [];
  const fetchOne = async (key: string) => {
    const value = await store.getJson(key);
    return value === undefined ? null : JSON.stringify(value);
  };
  for await (const obj of store.list(prefix)) {
    if (!obj.key.endsWith(".json")) continue;
    const p = fetchOne(obj.key);
    p.catch(() => {}); // awaited in order below; this only keeps an early failure from going unhandled
    inflight.push(p);
    if (inflight.length >= concurrency) {
      const line = await inflight.shift()!;
      if (line !== null) yield line;
    }
  }
  while (inflight.length > 0) {
    const line = await inflight.shift()!;
    if (line !== null) yield line;
  }
}

/**
 * Resolves once the run is over (with `runs`: completed, cancelled or failed; without: every
 * item the producer took in has finished), or on abort / timeout.
 */
export async function waitForRun(
  run: string,
  ledger: RunLedger,
  opts: { runs?: RunRegistry; pollMs?: number; timeoutMs?: number; signal?: AbortSignal; onProgress?(c: RunCounts): void } = {},
): Promise<RunCounts> {
  const deadline = opts.timeoutMs !== undefined ? Date.now() + opts.timeoutMs : Infinity;
  for (;;) {
    const c = await ledger.counts(run);
    opts.onProgress?.(c);
    if (opts.runs) {
      const state = await opts.runs.state(run, 0);
      if (state === "completed" || state === "cancelled" || state === "failed") return c;
    } else if (c.items > 0 && c.completed + c.failed >= c.items) return c;
    if (opts.signal?.aborted) return c;
    if (Date.now() > deadline)
      throw new Error(`run ${run} did not finish within ${opts.timeoutMs} ms (${c.completed + c.failed}/${c.items} finished)`);
    // Abortable and leaves no listener behind (a long wait polls thousands of times).
    await sleep(opts.pollMs ?? 500, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => {});
  }
}
