/**
 * The real fleet of `npm run bench:fleet`: `stagebeam worker` processes on the bundled model
 * (and verifier), a private redis-server and the embedded S3 (test/support/fleet-env.ts), runs
 * submitted in this process.
 *
 *   commands   one run per strategy: INFO commandstats and INFO stats before and after (the
 *              bench's own polls taken out), and MONITOR during the run to say who sent what
 *   overhead   stage-level N=4 on the same items: in process (engine-row.ts, the engine bench's
 *              own row) and through the fleet, timed from submit to the last result
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { startWorkerProcesses, type WorkerProcess } from "../../apps/demo/services/worker-processes.ts";
import type { SearchSettingsInput } from "../../shared/core/search/settings.ts";
import type { FleetEnv } from "../support/fleet-env.ts";
import { openShard, RunWatch, submitManifest, type Shard } from "./fleet-runs.ts";
import { monitorSource, startMonitor, type CommandTally } from "./redis-monitor.ts";
import { readRedis, redisDelta, type RedisDelta } from "./redis-stats.ts";
import { dataBytes, MemorySampler, type MemoryPerItem } from "./redis-memory.ts";
import { BUNDLED_MODEL } from "./decode.ts";
import { measureInChild } from "./engine-row.ts";

export interface StrategySpec {
  label: string;
  settings: SearchSettingsInput;
}

export interface StrategyRow {
  label: string;
  items: number;
  done: number;
  correct: number;
  seconds: number;
  /** Every call Redis counted (INFO commandstats: Lua-called commands included), less the bench's polls. */
  callsPerItem: number;
  /** Commands clients sent (MONITOR), the bench's own connection left out. */
  sentPerItem: number;
  netInPerItem: number;
  netOutPerItem: number;
  /**
   * Redis's own CPU seconds an item (INFO cpu), less what the idle fleet costs it in as long
   * (idleRedisCpu); MONITOR's share in it when it was on.
   */
  cpuPerItem: number;
  delta: RedisDelta;
  tally: CommandTally;
  polls: number;
  /** Redis bytes an item, waiting, in flight and finished (redis-memory.ts). */
  memory: MemoryPerItem;
}

export interface RealFleet {
  shard: Shard;
  workers: WorkerProcess[];
  close(): Promise<void>;
}

/** Worker processes on the bundled policy (and verifier, unless `models` says "policy"), served on the env's queues. */
export async function startRealFleet(
  env: FleetEnv,
  workers: number,
  concurrency: number,
  models: "policy,verifier" | "policy" = "policy,verifier",
): Promise<RealFleet> {
  const procs = await startWorkerProcesses(workers, {
    env: { ...env.env, WORKER_MODELS: models, WORKER_CONCURRENCY: String(concurrency), LOG_LEVEL: "warn" },
  });
  const shard = openShard({ url: env.redis.url }, env.client, env.prefix);
  return {
    shard,
    workers: procs,
    close: async () => {
      await Promise.all(procs.map((w) => w.stop(30_000)));
      await shard.queues.close();
    },
  };
}

/**
 * Redis CPU seconds a second while the fleet is up and idle (its workers' blocking fetches,
 * lock renewals and stalled checks, Redis's own cron): a cost of time, not of items, which a
 * slow machine's long runs would otherwise charge to each item.
 */
export async function idleRedisCpu(env: FleetEnv, seconds: number): Promise<number> {
  const client = env.client.duplicate();
  try {
    const before = await readRedis(client);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const d = redisDelta(before, await readRedis(client));
    return d.cpuSeconds / d.seconds;
  } finally {
    client.disconnect();
  }
}

/** One run of `items` items of the scene set under `spec`, counted. */
export async function countStrategy(
  env: FleetEnv,
  fleet: RealFleet,
  manifest: string,
  items: number,
  spec: StrategySpec,
  run: string,
  { monitor: withMonitor, idleCpu }: { monitor: boolean; idleCpu: number },
): Promise<StrategyRow> {
  // The bench's own polls go on a connection of their own, which MONITOR leaves out.
  const watcher = env.client.duplicate();
  await watcher.ping();
  const monitor = withMonitor ? await startMonitor(env.client, env.prefix, new Set([monitorSource(watcher)])) : undefined;
  const memory = new MemorySampler(watcher, env.prefix, run, items, await dataBytes(watcher));
  const before = await readRedis(watcher);
  // Its MEMORY USAGE walk costs Redis CPU too: only with MONITOR, when the CPU figure is an upper bound anyway.
  if (withMonitor) memory.start(250);
  const t0 = performance.now();
  await submitManifest(fleet.shard, env.store, run, manifest, spec.settings, items);
  const watch = new RunWatch(watcher, [[env.prefix, run]]);
  const done = await watch.waitFor(items, { pollMs: 200 });
  const seconds = (performance.now() - t0) / 1000;
  await memory.stop();
  const sampled = { commands: memory.commands, netIn: memory.netIn, netOut: memory.netOut };
  const after = await readRedis(watcher);
  const tally = monitor
    ? await monitor.stop()
    : { sent: new Map(), inLua: new Map(), sentTotal: 0, inLuaTotal: 0, usec: new Map() };
  // The last request jobs finish just after their outcome is recorded.
  await new Promise((r) => setTimeout(r, 1_000));
  const perItem = await memory.finish();
  watcher.disconnect();
  const delta = redisDelta(before, after);
  const counts = await env.ledger.counts(run);
  // The polls' HGETALLs and the memory samples are the bench's; the rest is the fleet's and the producer's.
  const polls = watch.progress.polls + sampled.commands;
  return {
    label: spec.label,
    items,
    done,
    correct: counts.correct,
    seconds,
    callsPerItem: (delta.totalCalls - polls) / items,
    sentPerItem: tally.sentTotal / items,
    netInPerItem: (delta.netIn - sampled.netIn) / items,
    netOutPerItem: (delta.netOut - sampled.netOut) / items,
    cpuPerItem: (delta.cpuSeconds - idleCpu * delta.seconds) / items,
    delta,
    tally,
    polls,
    memory: perItem,
  };
}

export interface OverheadRow {
  items: number;
  inProcess: { seconds: number; perSecond: number; correct: number };
  fleet: { seconds: number; perSecond: number; correct: number };
  /** CPU seconds of each process of the fleet run: worker(s), redis-server, S3, this process (producer and watch). */
  fleetCpu: Record<string, number>;
  inProcessCpu: number;
  /** Batched decode steps and the sequences they carried, in process and on the workers (stagebeam_decode_batch_size). */
  decode: { inProcess: { steps: number; rows: number }; fleet: { steps: number; rows: number } };
}

/** The workers' decode steps and sequences so far, from their /metrics. */
async function fleetDecode(fleet: RealFleet): Promise<{ steps: number; rows: number }> {
  let steps = 0;
  let rows = 0;
  for (const w of fleet.workers) {
    const text = await (await fetch(w.metricsUrl)).text();
    steps += Number(/^stagebeam_decode_batch_size_count(?:\{[^}]*\})? ([\d.e+]+)$/m.exec(text)?.[1] ?? Number.NaN);
    rows += Number(/^stagebeam_decode_batch_size_sum(?:\{[^}]*\})? ([\d.e+]+)$/m.exec(text)?.[1] ?? Number.NaN);
  }
  return { steps, rows };
}

/** User + system CPU seconds of a process so far (/proc/<pid>/stat; clock ticks of 1/100 s). */
async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Stage-level N=4 over the same items in process and through the fleet. */
export async function measureOverhead(
  env: FleetEnv,
  fleet: RealFleet,
  setDir: string,
  items: number,
  inProcessConcurrency: number,
  run: string,
): Promise<OverheadRow> {
  const settings: SearchSettingsInput = { strategy: "stage", beam: 4, judgeMode: "score", seed: 1 };
  const local = await measureInChild({
    kind: "search",
    label: "in process",
    model: BUNDLED_MODEL,
    setDir,
    reference: false,
    judge: "score",
    concurrency: inProcessConcurrency,
    beam: 4,
    seed: 1,
    merge: true,
  });
  const pids: Record<string, number> = { "redis-server": env.redis.pid, s3: env.s3.pid };
  for (const w of fleet.workers) pids[`worker ${w.index}`] = w.pid;
  const cpuOf = async () => {
    const out: Record<string, number> = {};
    for (const [name, pid] of Object.entries(pids)) out[name] = await cpuSecondsOf(pid);
    const self = process.cpuUsage();
    out["bench (producer)"] = (self.user + self.system) / 1e6;
    return out;
  };
  const cpu0 = await cpuOf();
  const decode0 = await fleetDecode(fleet);
  const t0 = performance.now();
  await submitManifest(fleet.shard, env.store, run, join(setDir, "items.jsonl"), settings, items);
  await new RunWatch(env.client, [[env.prefix, run]]).waitFor(items, { pollMs: 100 });
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = await cpuOf();
  const decode1 = await fleetDecode(fleet);
  const fleetCpu = Object.fromEntries(Object.keys(cpu1).map((k) => [k, cpu1[k]! - cpu0[k]!]));
  const counts = await env.ledger.counts(run);
  return {
    items,
    inProcess: {
      seconds: local.outcome.summary.seconds,
      perSecond: items / local.outcome.summary.seconds,
      correct: local.outcome.summary.overall.correct,
    },
    fleet: { seconds, perSecond: items / seconds, correct: counts.correct },
    fleetCpu,
    inProcessCpu: local.cpuSeconds,
    decode: {
      inProcess: { steps: local.decodeSteps, rows: local.decodeRows },
      fleet: { steps: decode1.steps - decode0.steps, rows: decode1.rows - decode0.rows },
    },
  };
}
