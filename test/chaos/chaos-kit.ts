/**
 * What every chaos scenario does (scenarios/*.ts add their fault): a fleet on real servers —
 * redis-server with AOF everysec and a password, the embedded S3 behind the fault-injecting
 * proxy (fault-proxy.ts), `stagebeam worker` processes on the bundled model — then a submit,
 * the wait for the run's end, and its row: submitted / results / failures by reason / lost /
 * done twice / answers equal to a clean in-process run of the same items and settings /
 * secrets found in anything the run printed or stored.
 *
 * "Done twice" is a result object that S3 stored more than once: every worker writes through
 * the proxy, which counts the PUTs of each path that the server answered with a 2xx (see
 * fault-proxy.ts). Submit writes no results, and the count is read only once every queue has
 * drained, so a late duplicate job (a re-run after a lost lock or lost Redis writes) is seen.
 *
 * The credentials hold the characters that broke redaction before (`/`, `@`, `:`, `%`, `#`,
 * non-ASCII): the Redis password is set with --requirepass and travels percent-encoded in
 * REDIS_URL; the S3 secret is any string (s3rver does not check signatures).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { startRedisServer, type RedisServer } from "../../apps/demo/services/redis-server.ts";
import { startWorkerProcesses, type WorkerProcess } from "../../apps/demo/services/worker-processes.ts";
import { toItemId } from "../../shared/core/ids.ts";
import { createRng, type Rng } from "../../shared/core/random.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { paramsFor, type SearchSettings } from "../../shared/core/search/settings.ts";
import { loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { createModelHost } from "../../workers/fleet/worker/index.ts";
import type { FailureRecord, ModelHost, ResultRecord } from "../../workers/fleet/protocol/index.ts";
import { streamRecords } from "../../workers/fleet/ops/index.ts";
import { runCli } from "../support/cli.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";
import { findSecrets } from "../support/secret-scan.ts";
import { startFaultProxy, type FaultProxy } from "./fault-proxy.ts";

export const SETTINGS: SearchSettings = {
  strategy: "stage",
  beam: 2,
  seed: 7,
  judgeMode: "score",
  maxStageTokens: 512,
  maxSentenceSteps: 40,
  merge: true,
};
const SUBMIT_SETTINGS = ["--strategy", "stage", "--beam", "2", "--seed", "7"];
const SCENE_SEED = 31;

export const REDIS_PASSWORD = "qzk7Vw/xq9Lm@Tr4pQ:Kv2Hd%41Nsyj#Üb8ñé";
export const S3_SECRET = "Wq3zP/Ld8k@Xv7m:Hq2%2Fpt#Ωr9Jçü";

const t0 = Date.now();
export const say = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);

export interface SceneItem {
  id: string;
  /** Absolute path of the image file. */
  imagePath: string;
  question: string;
}

/** The scene set every scenario submits (the same seed, so the reference is computed once). */
export async function writeScenes(dir: string, count: number): Promise<{ manifest: string; items: SceneItem[] }> {
  await writeSceneSet(dir, { count, seed: SCENE_SEED });
  const manifest = join(dir, "items.jsonl");
  const items = (await readFile(manifest, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { id: string; image: string; question: string })
    .map((l) => ({ id: l.id, imagePath: join(dir, l.image), question: l.question }));
  return { manifest, items };
}

// ---------------------------------------------------------------------------
// The reference: the same items and settings in process, on the same model, once per item.

let referenceHost: Promise<ModelHost> | undefined;
const referenceAnswers = new Map<string, string | null>();
const referenceKey = (id: string, i: SceneItem, image: Buffer) => `${id}\0${image.toString("base64")}\0${i.question}`;

/** Each item's answer, by item key (the id the search and the engine are given, as in the fleet). */
export async function reference(items: readonly SceneItem[]): Promise<Map<string, string | null>> {
  // The bundled model, from its folder (the S3 section is not used for a local model).
  const config = loadConfig({ MODEL_DIR: "", MODEL_URI: "", S3_BUCKET: "unused" }, ["model", "engine", "s3", "worker"]);
  referenceHost ??= createModelHost(config, {
    logger: createLogger({ level: "silent" }),
    metrics: createMetrics({ defaultMetrics: false }),
  });
  const host = await referenceHost;
  const out = new Map<string, string | null>();
  for (const item of items) {
    const image = await readFile(item.imagePath);
    const id = toItemId(item.id);
    const key = referenceKey(id, item, image);
    if (!referenceAnswers.has(key)) {
      const open = await host.open({ id, image, question: item.question });
      referenceAnswers.set(key, (await runSearch(paramsFor(id, SETTINGS), open)).answer);
      open.close();
    }
    out.set(id, referenceAnswers.get(key)!);
  }
  return out;
}

export async function closeReference(): Promise<void> {
  if (referenceHost) await (await referenceHost).close?.();
  referenceHost = undefined;
}

// ---------------------------------------------------------------------------
// The environment

/** The running redis-server, replaced by each restart on the same port and data directory. */
export interface RedisControl {
  current(): RedisServer;
  /** SHUTDOWN: Redis fsyncs the AOF and exits. */
  shutdown(): Promise<void>;
  /** SIGKILL: what was written to the AOF survives (it is in the OS's page cache). */
  kill(): Promise<void>;
  /**
   * SIGKILL, then the AOF cut back to its length of `ms` ago: what a power cut loses with
   * `appendfsync everysec`, where only what was fsynced (up to about a second ago) is on disk.
   * The AOF's size is sampled every 50 ms from the start; the incremental file of Redis 7's
   * multi-part AOF is append-only while no rewrite runs (auto rewrite is off here), so its
   * first N bytes are exactly what Redis had written when it was N bytes long. A command cut
   * in half at that point is dropped by Redis on load (aof-load-truncated, the default).
   */
  killLosingLast(ms: number): Promise<{ bytesLost: number }>;
  restart(): Promise<void>;
  /** Stops the server and the AOF sampling. */
  stop(): Promise<void>;
}

export interface ChaosEnv {
  fleet: FleetEnv;
  proxy: FaultProxy;
  redis: RedisControl;
  /** Workers started so far (live and dead). */
  workers: WorkerProcess[];
  /** Workers this scenario killed on purpose. */
  killed: Set<WorkerProcess>;
  startWorkers(count: number): Promise<WorkerProcess[]>;
  /** Runs `stagebeam <args>` against the fleet; its output is kept for the secrets check. */
  cli(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Lines of the workers' logs that match. */
  logLines(pattern: RegExp): Promise<number>;
  /** Occurrences of any form or fragment of the credentials in logs, CLI output and S3 objects. */
  secretHits(): Promise<string[]>;
  tmp: string;
  close(): Promise<void>;
}

const AOF_DIR = "appendonlydir";

async function aofIncrFile(dir: string): Promise<string> {
  const manifest = await readFile(join(dir, AOF_DIR, "appendonly.aof.manifest"), "utf8");
  const m = /^file (\S+) seq \d+ type i$/m.exec(manifest);
  if (!m) throw new Error(`no incremental AOF in the manifest:\n${manifest}`);
  return join(dir, AOF_DIR, m[1]!);
}

async function redisControl(first: RedisServer, password: string, extraArgs: string[]): Promise<RedisControl> {
  let server = first;
  const samples: { at: number; file: string; size: number }[] = [];
  let sampling = true;
  void (async () => {
    while (sampling) {
      try {
        const file = await aofIncrFile(server.dir);
        samples.push({ at: Date.now(), file, size: (await stat(file)).size });
        if (samples.length > 400) samples.shift();
      } catch {
        // Between a kill and a restart there may be nothing to sample.
      }
      await sleep(50);
    }
  })();
  return {
    current: () => server,
    async shutdown() {
      const c = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
      c.on("error", () => {});
      await c.connect();
      await c.call("SHUTDOWN").catch(() => {}); // the connection closes before any reply
      c.disconnect();
      await server.stop();
    },
    kill: () => server.kill(),
    async killLosingLast(ms) {
      const cut = Date.now() - ms;
      await server.kill();
      const before = samples.filter((s) => s.at <= cut).at(-1);
      if (!before) throw new Error(`no AOF size sampled ${ms} ms before the kill`);
      const file = await aofIncrFile(server.dir);
      if (file !== before.file) throw new Error(`the AOF was rewritten in the last ${ms} ms (${before.file} → ${file})`);
      const size = (await stat(file)).size;
      await truncate(file, before.size);
      return { bytesLost: size - before.size };
    },
    async restart() {
      server = await startRedisServer({ port: server.port, dir: server.dir, password, extraArgs });
    },
    async stop() {
      sampling = false;
      await server.stop();
    },
  };
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  }
  return out;
}

export interface ChaosEnvOptions {
  /** Extra `stagebeam worker` arguments. */
  workerArgs?: readonly string[];
}

export async function openChaosEnv(opts: ChaosEnvOptions = {}): Promise<ChaosEnv> {
  const tmp = await mkdtemp(join(tmpdir(), "sb-chaos-"));
  const redisDir = join(tmp, "redis");
  const logDir = join(tmp, "logs");
  await mkdir(redisDir);
  await mkdir(logDir);
  // No automatic AOF rewrite, so that the incremental AOF only grows (RedisControl.killLosingLast).
  const redisArgs = ["--auto-aof-rewrite-percentage", "0"];
  const fleet = await startFleetEnv({
    redis: { dir: redisDir, password: REDIS_PASSWORD, extraArgs: redisArgs },
    s3: { secretAccessKey: S3_SECRET },
  });
  // Redis goes away on purpose: its errors surface on use (the waits retry them), not as noise.
  fleet.client.on("error", () => {});
  const s3 = new URL(fleet.env.S3_ENDPOINT!);
  const proxy = await startFaultProxy({ host: s3.hostname, port: Number(s3.port) });
  const redis = await redisControl(fleet.redis, REDIS_PASSWORD, redisArgs);
  const workerEnv = {
    ...fleet.env,
    S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
    WORKER_CONCURRENCY: "4",
    LOG_LEVEL: "info",
  };
  const workers: WorkerProcess[] = [];
  const outputs: string[] = [];
  let starts = 0;
  return {
    fleet,
    proxy,
    redis,
    workers,
    killed: new Set(),
    tmp,
    async startWorkers(count) {
      const started = await startWorkerProcesses(count, {
        env: workerEnv,
        args: ["--lock-duration", "30", ...(opts.workerArgs ?? [])],
        logDir: join(logDir, `start-${starts++}`),
      });
      workers.push(...started);
      for (const w of started) outputs.push(JSON.stringify(w.ready));
      return started;
    },
    async cli(args) {
      const r = await runCli(args, fleet.env);
      outputs.push(r.stdout, r.stderr);
      return r;
    },
    async logLines(pattern) {
      let n = 0;
      for (const f of await filesUnder(logDir)) for (const l of (await readFile(f, "utf8")).split("\n")) if (pattern.test(l)) n++;
      return n;
    },
    async secretHits() {
      const texts: [string, string][] = outputs.map((o, i) => [`command output ${i}`, o]);
      for (const dir of [logDir, fleet.s3.dir]) for (const f of await filesUnder(dir)) texts.push([f, await readFile(f, "utf8")]);
      return findSecrets(texts, [REDIS_PASSWORD, S3_SECRET]);
    },
    async close() {
      await Promise.all(workers.map((w) => w.kill()));
      await proxy.close();
      await fleet.close();
      await redis.stop();
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

export function submitArgs(run: string, manifest: string): string[] {
  return ["submit", "--run", run, "--manifest", manifest, ...SUBMIT_SETTINGS];
}

/** Resolves once the ledger has `n` items done; Redis errors (it may be down) are waited out. */
export async function untilCompleted(env: ChaosEnv, run: string, n: number): Promise<void> {
  for (;;) {
    const done = await env.fleet.ledger.counts(run).then(
      (c) => c.completed,
      () => 0,
    );
    if (done >= n) return;
    await sleep(100);
  }
}

/**
 * The run's end as the fleet reports it (its state completed, cancelled or failed), then every
 * queue drained, so no job is left that could still write. Null when either takes longer than
 * `timeoutMs` (or `giveUp` says so); Redis errors (it may be down) are waited out.
 */
export async function untilRunEnds(
  env: ChaosEnv,
  run: string,
  timeoutMs: number,
  giveUp: () => boolean = () => false,
): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  let state: string | null = null;
  while (Date.now() < deadline && !giveUp()) {
    state = await env.fleet.runs.state(run, 0).catch(() => null);
    if (state === "completed" || state === "cancelled" || state === "failed") break;
    await sleep(500);
  }
  if (state !== "completed" && state !== "cancelled" && state !== "failed") return null;
  while (Date.now() < deadline) {
    const busy = await Promise.all(
      env.fleet.queues.all.map((q) =>
        q
          .getJobCounts("active", "wait", "delayed", "prioritized", "waiting-children")
          .then((c) => Object.values(c).reduce((a, b) => a + b, 0))
          .catch(() => 1),
      ),
    );
    if (busy.every((n) => n === 0)) return state;
    await sleep(500);
  }
  return null;
}

export interface RunRecords {
  results: ResultRecord[];
  failures: FailureRecord[];
}

export async function collectRecords(env: ChaosEnv, run: string): Promise<RunRecords> {
  const results: ResultRecord[] = [];
  for await (const line of streamRecords(env.fleet.store, run, "results")) results.push(JSON.parse(line) as ResultRecord);
  const failures: FailureRecord[] = [];
  for await (const line of streamRecords(env.fleet.store, run, "failed")) failures.push(JSON.parse(line) as FailureRecord);
  return { results, failures };
}

/** Result objects of the run that S3 stored more than once. */
export function resultsStoredTwice(env: ChaosEnv, run: string): string[] {
  return [...env.proxy.puts]
    .filter(([path, n]) => path.includes(`/runs/${run}/results/`) && n.stored > 1)
    .map(([path, n]) => `${path} (${n.stored} times)`);
}

/** Workers that exited although the scenario did not kill them. */
export function unexpectedExits(env: ChaosEnv): string[] {
  return env.workers
    .filter((w) => !env.killed.has(w) && (w.child.exitCode !== null || w.child.signalCode !== null))
    .map((w) => `worker pid ${w.pid} exited (${w.child.exitCode ?? w.child.signalCode}):\n${w.logs()}`);
}

// ---------------------------------------------------------------------------
// The row

export interface Row {
  scenario: string;
  submitted: number;
  results: number;
  failures: Record<string, number>;
  lost: number;
  doneTwice: number;
  /** Answers equal to the reference, of the results expected. */
  equal: string;
  secrets: number;
  seconds: number;
  /** Every check that failed, in words (empty: the scenario passed). */
  problems: string[];
  notes: string[];
}

export function failuresByReason(failures: readonly FailureRecord[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of failures) out[f.reason] = (out[f.reason] ?? 0) + 1;
  return out;
}

const describeFailures = (f: Record<string, number>) =>
  Object.keys(f).length === 0
    ? "0"
    : Object.entries(f)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([r, n]) => `${n} ${r}`)
        .join(", ");

export function formatTable(rows: readonly Row[]): string {
  const head = [
    "scenario",
    "submitted",
    "results",
    "failures",
    "lost",
    "done twice",
    "answers equal to the reference",
    "secrets found",
    "time",
    "checks",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    const cells = [
      r.scenario,
      r.submitted,
      r.results,
      describeFailures(r.failures),
      r.lost,
      r.doneTwice,
      r.equal,
      r.secrets,
      `${Math.round(r.seconds)} s`,
      r.problems.length === 0 ? "pass" : "FAIL",
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// The common scenario: scenes, a fault while the run is going, every item completed.

export interface FaultContext {
  env: ChaosEnv;
  run: string;
  /** Items submitted. */
  items: number;
  rng: Rng;
  /** Whether the run has ended (for faults that repeat until then). */
  ended(): boolean;
}

export interface FaultScenario {
  name: string;
  /** The row's label. */
  title: string;
  /** Items submitted by default. */
  items: number;
  /** Workers started. */
  workers?: number;
  /** Items done before the fault strikes (default a sixth of them). */
  strikesAfter?: number;
  /**
   * Injects the fault once `strikesAfter` items are done; resolves when it is over (or, for
   * a repeating fault, once the run has ended). Returns notes for the report.
   */
  fault(ctx: FaultContext): Promise<string[]>;
}

export interface ScenarioOptions {
  /** Items to submit (default: the scenario's). */
  items?: number;
  /** How long the run may take once submitted (default 30 minutes). */
  timeoutMs?: number;
}

export async function runFaultScenario(s: FaultScenario, opts: ScenarioOptions = {}): Promise<Row> {
  const started = Date.now();
  const n = opts.items ?? s.items;
  const run = `chaos-${s.name}`;
  const env = await openChaosEnv();
  try {
    const scenes = await writeScenes(join(env.tmp, "scenes"), n);
    const expected = await reference(scenes.items);
    say(`${s.name}: reference answers for ${expected.size} items`);
    await env.startWorkers(s.workers ?? 3);
    const submit = await env.cli(submitArgs(run, scenes.manifest));
    const problems: string[] = [];
    if (submit.code !== 0) problems.push(`submit exited ${submit.code}: ${submit.stderr.trim()}`);
    say(`${s.name}: submitted ${n} items to ${s.workers ?? 3} workers`);

    let isEnded = false;
    const faulted = (async () => {
      await untilCompleted(env, run, s.strikesAfter ?? Math.max(1, Math.floor(n / 6)));
      return s.fault({ env, run, items: n, rng: createRng(`chaos-${s.name}`), ended: () => isEnded });
    })();
    let faultFailed = false;
    faulted.catch(() => (faultFailed = true)); // awaited below
    const state = await untilRunEnds(env, run, opts.timeoutMs ?? 30 * 60_000, () => faultFailed);
    isEnded = true;
    const notes = await faulted;
    const kept = await env.logLines(/result already in S3; kept the first one/);
    if (kept > 0) notes.push(`${kept} re-run items found their result already in S3 and kept it`);
    if (state === null) problems.push("the run did not end (or its queues did not drain) in time");
    else if (state !== "completed") problems.push(`the run ended ${state}`);

    const { results, failures } = await collectRecords(env, run);
    const done = new Set([...results.map((r) => r.item), ...failures.map((f) => f.item)]);
    const both = results.filter((r) => failures.some((f) => f.item === r.item));
    const twice = resultsStoredTwice(env, run);
    const equal = results.filter((r) => expected.has(r.item) && expected.get(r.item) === r.answer).length;
    const lost = scenes.items.filter((i) => !done.has(toItemId(i.id))).length;
    const secrets = await secretHits(env, run);
    const exits = unexpectedExits(env);
    if (lost > 0) problems.push(`${lost} items lost`);
    if (failures.length > 0) problems.push(`${failures.length} items failed: ${failures[0]!.message}`);
    if (both.length > 0) problems.push(`${both.length} items have a result and a failure record`);
    if (twice.length > 0) problems.push(`results stored twice: ${twice.join(", ")}`);
    if (equal !== n) problems.push(`${n - equal} answers differ from the reference`);
    if (secrets.length > 0) problems.push(`secrets found: ${secrets.join("; ")}`);
    if (exits.length > 0) problems.push(`workers exited: ${exits.join("; ")}`);
    return {
      scenario: s.title,
      submitted: n,
      results: results.length,
      failures: failuresByReason(failures),
      lost,
      doneTwice: twice.length,
      equal: `${equal}/${n}`,
      secrets: secrets.length,
      seconds: (Date.now() - started) / 1000,
      problems,
      notes,
    };
  } finally {
    await env.close();
  }
}

/** The secrets check of a run: `status` is asked too, so its messages are searched as well. */
export async function secretHits(env: ChaosEnv, run: string): Promise<string[]> {
  await env.cli(["status", "--run", run]);
  return env.secretHits();
}
