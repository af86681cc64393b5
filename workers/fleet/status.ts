/**
 * A run's progress (`stagebeam status`), its records streamed from S3 (`stagebeam results`),
 * and waiting for a run to finish (`stagebeam demo`, `submit --wait`).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { formatDuration } from "../../shared/core/duration.ts";
import { wilson95 } from "../../shared/core/eval/stats.ts";
import { failuresPrefix, manifestKey, resultsPrefix, type S3Store } from "../../shared/io/storage/s3-store.ts";
import { QUEUE_STATES } from "./fleet-metrics.ts";
import type { RunCounts, RunLedger } from "./ledger.ts";
import type { FleetQueues } from "./protocol.ts";
import { RunManifestSchema, type RunManifest } from "./records.ts";

export interface RunStatus {
  run: string;
  manifest: RunManifest | null;
  counts: RunCounts;
  /** Items finished either way (results + failures, bad manifest lines included). */
  finished: number;
  pending: number;
  done: boolean;
  /** Finished items per second since the run was created. */
  throughput: number | null;
  etaSeconds: number | null;
  accuracy: { correct: number; graded: number; rate: number; ci95: [number, number] } | null;
  /** Job counts of the queues by state (the queues are shared by every run). */
  queues: Record<string, Record<string, number>>;
  at: string;
}

export async function runStatus(
  run: string,
  deps: { store: S3Store; ledger: RunLedger; queues?: Pick<FleetQueues, "all"> },
  now = Date.now(),
): Promise<RunStatus> {
  const [manifest, counts, queues] = await Promise.all([
    deps.store.getJson(manifestKey(run), RunManifestSchema),
    deps.ledger.counts(run),
    deps.queues ? queueCounts(deps.queues.all) : Promise.resolve({}),
  ]);
  const finished = counts.completed + counts.failed;
  const pending = Math.max(0, counts.items - finished);
  const done = counts.items > 0 && pending === 0;
  const start = counts.createdAt ?? (manifest ? Date.parse(manifest.createdAt) : null);
  const end = done && counts.lastAt !== null ? counts.lastAt : now;
  const elapsed = start !== null ? (end - start) / 1000 : null;
  const throughput = elapsed !== null && elapsed > 0 && finished > 0 ? finished / elapsed : null;
  const graded = counts.correct + counts.wrong;
  return {
    run,
    manifest: manifest ?? null,
    counts,
    finished,
    pending,
    done,
    throughput,
    etaSeconds: done ? 0 : throughput !== null ? pending / throughput : null,
    accuracy:
      graded > 0
        ? { correct: counts.correct, graded, rate: counts.correct / graded, ci95: wilson95(counts.correct, graded) }
        : null,
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
  const set = s.manifest?.settings;
  lines.push(`run        ${s.run}${s.manifest ? `  (created ${s.manifest.createdAt})` : "  (no run manifest in S3)"}`);
  if (set) {
    lines.push(
      `settings   strategy ${set.strategy} · beam ${set.beam} · judge ${set.judgeMode} · seed ${set.seed} · max stage tokens ${set.maxStageTokens}`,
    );
  }
  const c = s.counts;
  lines.push(
    `items      ${c.items} submitted · ${c.completed} completed · ${c.failed} failed · ${s.pending} pending${s.done ? "  — done" : ""}`,
  );
  lines.push(
    `throughput ${s.throughput !== null ? `${s.throughput.toFixed(2)} items/s` : "—"} · ETA ${s.done ? "done" : s.etaSeconds !== null ? formatDuration(s.etaSeconds) : "—"} · ${c.tokens} tokens generated`,
  );
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

/** Resolves once every item the producer took in has finished (or on abort / timeout). */
export async function waitForRun(
  run: string,
  ledger: RunLedger,
  opts: { pollMs?: number; timeoutMs?: number; signal?: AbortSignal; onProgress?(c: RunCounts): void } = {},
): Promise<RunCounts> {
  const deadline = opts.timeoutMs !== undefined ? Date.now() + opts.timeoutMs : Infinity;
  for (;;) {
    const c = await ledger.counts(run);
    opts.onProgress?.(c);
    if (c.items > 0 && c.completed + c.failed >= c.items) return c;
    if (opts.signal?.aborted) return c;
    if (Date.now() > deadline)
      throw new Error(`run ${run} did not finish within ${opts.timeoutMs} ms (${c.completed + c.failed}/${c.items} finished)`);
    // Abortable and leaves no listener behind (a long wait polls thousands of times).
    await sleep(opts.pollMs ?? 500, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => {});
  }
}
