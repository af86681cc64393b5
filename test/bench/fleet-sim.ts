/**
 * The simulated fleet of `npm run bench:fleet`: W fleet workers over latency hosts
 * (latency-host.ts), many to a process (sim-workers.ts), on one real redis-server or on a real
 * Redis Cluster with the work sharded over hash-tagged prefixes, one per node. Each size runs
 * the same kind of run (stage-level N=4, score judge) long enough for a steady window.
 *
 *   ideal items/s     W × slots ÷ (GPU slot-seconds an item takes in process, one open per item)
 *   achieved items/s  completions in the window (between its first and last completion)
 *   GPU busy          the hosts' busy slot-seconds in the window ÷ (W × slots × window)
 *   Redis CPU         the servers' own CPU seconds in the window ÷ window (one core = 100%)
 *   sim event loop    the simulation processes' event-loop utilisation in the window (mean)
 *   machine CPU       every process's CPU in the window (/proc/stat), in cores: at the machine's
 *                     core count, the simulation is limited by this machine, not by the fleet
 */
import { readFile, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import type { S3Server } from "../../apps/demo/services/s3-server.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { paramsFor, parseSearchSettings, type SearchSettingsInput } from "../../shared/core/search/settings.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { connectRedis, type RedisTarget } from "../../workers/fleet/protocol/index.ts";
import { createLatencyHost, type LatencyModel } from "./latency-host.ts";
import { openShard, rateIn, RunWatch, submitManifest, type Shard } from "./fleet-runs.ts";
import { readRedis, redisDelta, sumDeltas, type RedisDelta } from "./redis-stats.ts";
import { startSimProcess, type SimProcess, type SimStats } from "./sim-workers.ts";

export const SIM_SETTINGS: SearchSettingsInput = { strategy: "stage", beam: 4, judgeMode: "score", seed: 1 };
/**
 * Unfinished items per GPU slot the producer keeps in the fleet: 1.5 is 6 items a 4-slot
 * worker, still far below a real run's (submit's --max-backlog, 1,000 items). A worker takes a
 * step's N candidates as one job and its job slots greedily, so with fewer items in flight
 * some workers queue work their GPU cannot start while others idle (at 0.6, 2.4 items a
 * worker: efficiency 0.52 at 10 workers, against 0.86 at 1.5).
 */
const BACKLOG_PER_SLOT = 1.5;
/** A window long enough for this many completions at the ideal rate (few completions are noisy). */
const MIN_WINDOW_ITEMS = 15;
const WARMUP_LIMIT_MS = 240_000;

export interface SimTarget {
  label: string;
  target: RedisTarget;
  /** Every server (one, or each node of the cluster), for INFO. */
  servers: { url: string }[];
  /** Queue prefixes the work is sharded over (one per node on a cluster). */
  prefixes: string[];
}

export interface SimRow {
  label: string;
  workers: number;
  processes: number;
  ideal: number;
  achieved: number;
  itemsInWindow: number;
  warmupSeconds: number;
  windowSeconds: number;
  gpuBusy: number;
  redisCpu: number[];
  redisCommandsPerSecond: number;
  simEventLoop: number;
  simCpu: number;
  /** The whole machine's CPU in the window (every process, other users' too), in cores. */
  machineCpu: number;
}

/** Busy and total jiffies of all CPUs (/proc/stat). */
async function machineJiffies(): Promise<{ busy: number; total: number }> {
  const [, ...fields] = (await readFile("/proc/stat", "utf8")).split("\n")[0]!.trim().split(/\s+/);
  const n = fields.map(Number);
  const idle = n[3]! + n[4]!;
  const total = n.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** GPU slot-seconds one item of the simulated run takes in process (one open, no fleet). */
export async function gpuSecondsPerItem(model: LatencyModel, items: number): Promise<{ seconds: number; latency: number }> {
  const host = createLatencyHost({ ...model, slots: 1_000 });
  const settings = parseSearchSettings(SIM_SETTINGS);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: items }, async (_, i) => {
      const open = await host.open({ id: `ideal-${i}`, image: Buffer.alloc(0), question: "How many objects?" });
      await runSearch(paramsFor(`ideal-${i}`, settings), open);
    }),
  );
  return { seconds: host.busySlotSeconds() / items, latency: (performance.now() - t0) / 1000 };
}

/** A manifest of `n` lines over a few images (the latency hosts never look at the pixels). */
export async function writeSimManifest(dir: string, images: readonly string[], n: number, tag: string): Promise<string> {
  const file = join(dir, `sim-${tag}.jsonl`);
  const lines = Array.from(
    { length: n },
    (_, i) =>
      `${JSON.stringify({ id: `${tag}-${i}`, image: images[i % images.length], question: "How many objects are there?", answer: "3" })}\n`,
  );
  await writeFile(file, lines.join(""));
  return file;
}

export interface SimulateOptions {
  model: LatencyModel;
  workers: number;
  processes: number;
  concurrency: number;
  idealPerWorker: number;
  warmupSeconds: number;
  windowSeconds: number;
  s3: S3Server;
  dir: string;
  images: readonly string[];
}

export async function simulate(where: SimTarget, o: SimulateOptions): Promise<SimRow> {
  const ideal = o.idealPerWorker * o.workers;
  const window = Math.max(o.windowSeconds, MIN_WINDOW_ITEMS / ideal);
  // Enough items in flight to keep every GPU busy while an item waits on Redis between its
  // steps, few enough that an item's latency (and so the warm-up) stays short.
  const backlog = Math.ceil((o.workers * o.model.slots * BACKLOG_PER_SLOT) / where.prefixes.length);
  const perShard = Math.ceil(2 * backlog + (ideal * (o.warmupSeconds + window) * 1.3 + 10) / where.prefixes.length);
  const client = connectRedis(where.target, { maxRetriesPerRequest: 3 });
  const store = S3Store.fromConfig(o.s3.config);
  const infos = where.servers.map((s) => new Redis(s.url, { maxRetriesPerRequest: 3 }));
  const shards: Shard[] = where.prefixes.map((p) => openShard(where.target, client, p));
  const sims: SimProcess[] = [];
  try {
    const prefixOf = (i: number) => where.prefixes[i % where.prefixes.length]!;
    const processes = Math.min(o.processes, o.workers);
    for (let p = 0; p < processes; p++) {
      const mine = Array.from({ length: o.workers }, (_, i) => i).filter((i) => i % processes === p);
      sims.push(
        await startSimProcess({
          redisUrl: where.target.url,
          cluster: where.target.cluster ?? false,
          prefixes: mine.map(prefixOf),
          s3: o.s3.config,
          model: o.model,
          concurrency: o.concurrency,
          name: `sim${o.workers}-p${p}`,
        }),
      );
    }
    // One run a shard, each under a name of its own: the runs share the S3 bucket (runs/<run>/…).
    const runs = shards.map((_, s) => `sim-${where.target.cluster ? "cluster" : "node"}-${o.workers}-${s}`);
    const feeding = new AbortController();
    const submits = Promise.all(
      shards.map(async (shard, s) => {
        const manifest = await writeSimManifest(o.dir, o.images, perShard, runs[s]!);
        await submitManifest(shard, store, runs[s]!, manifest, SIM_SETTINGS, perShard, { backlog, signal: feeding.signal });
      }),
    );
    submits.catch(() => {});
    const watch = new RunWatch(
      client,
      shards.map((s, i) => [s.prefix, runs[i]!] as const),
    );
    // Steady state: the warm-up lasts until the first wave of items (the backlog) has finished,
    // however long a saturated fleet takes for it, and at least `warmupSeconds`.
    const t0 = performance.now();
    const firstWave = backlog * shards.length;
    let from = Number.POSITIVE_INFINITY;
    let to = Number.POSITIVE_INFINITY;
    let before:
      | { redis: Awaited<ReturnType<typeof readRedis>>[]; sims: SimStats[]; machine: { busy: number; total: number } }
      | undefined;
    while (performance.now() < to) {
      const done = await watch.done();
      const now = performance.now();
      if (before === undefined && now - t0 > WARMUP_LIMIT_MS)
        throw new Error(`${where.label}, ${o.workers} workers: only ${done} items done in the warm-up`);
      if (before === undefined && now >= t0 + o.warmupSeconds * 1000 && done >= firstWave) {
        from = now;
        to = from + window * 1000;
        before = {
          redis: await Promise.all(infos.map(readRedis)),
          sims: await Promise.all(sims.map((s) => s.stats())),
          machine: await machineJiffies(),
        };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = {
      redis: await Promise.all(infos.map(readRedis)),
      sims: await Promise.all(sims.map((s) => s.stats())),
      machine: await machineJiffies(),
    };
    feeding.abort();
    await submits;
    const deltas: RedisDelta[] = after.redis.map((a, i) => redisDelta(before!.redis[i]!, a));
    const rate = rateIn(watch.progress, from, to);
    const simSeconds = (after.sims[0]!.at - before!.sims[0]!.at) / 1000;
    const sum = (xs: SimStats[], f: (s: SimStats) => number) => xs.reduce((a, s) => a + f(s), 0);
    const busy = sum(after.sims, (s) => s.busySlotSeconds) - sum(before!.sims, (s) => s.busySlotSeconds);
    const elu = after.sims.map((a, i) => {
      const b = before!.sims[i]!;
      return (a.eluActive - b.eluActive) / (a.eluActive + a.eluIdle - b.eluActive - b.eluIdle);
    });
    const all = sumDeltas(deltas);
    return {
      label: where.label,
      workers: o.workers,
      processes,
      ideal,
      achieved: rate.perSecond,
      itemsInWindow: rate.items,
      warmupSeconds: (from - t0) / 1000,
      windowSeconds: window,
      gpuBusy: busy / (o.workers * o.model.slots * simSeconds),
      redisCpu: deltas.map((d) => d.cpuSeconds / d.seconds),
      redisCommandsPerSecond: all.totalCalls / all.seconds,
      simEventLoop: elu.reduce((a, b) => a + b, 0) / elu.length,
      simCpu: (sum(after.sims, (s) => s.cpuSeconds) - sum(before!.sims, (s) => s.cpuSeconds)) / simSeconds,
      machineCpu: (cpus().length * (after.machine.busy - before!.machine.busy)) / (after.machine.total - before!.machine.total),
    };
  } finally {
    await Promise.all(sims.map((s) => s.kill()));
    await Promise.all(shards.map((s) => s.queues.close().catch(() => {})));
    await Promise.all(infos.map((c) => c.flushall().catch(() => {})));
    for (const c of infos) c.disconnect();
    client.disconnect();
    store.destroy();
  }
}
