/**
 * `npm run bench:submit`: the producer at scale. A manifest of N lines (default 1,000,000) of
 * s3:// images is submitted with `stagebeam submit` (one process, no workers) against a real
 * redis-server with AOF and the embedded S3, and measured: items per second, the producer's
 * peak RSS (VmHWM), Redis memory per waiting item and Redis commands per item
 * (INFO commandstats, Lua-called commands included), and where the time goes: the producer's and
 * Redis's CPU per item (/proc/<pid>/stat and INFO cpu). On one machine the two share its
 * cores, so those figures bound the items/s any producer on it can reach.
 *
 * With `--baseline REV` (default: the commit before the batch-service work) the same
 * measurement runs first on that revision's code, checked out from git into a temp folder,
 * so both figures come from one run on one machine.
 *
 *   npm run bench:submit -- [--lines N] [--baseline REV | --no-baseline] [--chunk N]
 */
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { once } from "node:events";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { startRedisServer } from "../../apps/demo/services/redis-server.ts";
import { startS3Server } from "../../apps/demo/services/s3-server.ts";
import { readRedis, redisDelta } from "./redis-stats.ts";
import { runKeys } from "../../workers/fleet/protocol/index.ts";

const BASELINE_REV = "260c39a";
const repo = resolve(import.meta.dirname, "../..");
const { values } = parseArgs({
  options: {
    lines: { type: "string", default: "1000000" },
    baseline: { type: "string", default: BASELINE_REV },
    "no-baseline": { type: "boolean", default: false },
    chunk: { type: "string", default: "1000" },
  },
});
const lines = Number(values.lines);

interface Figures {
  label: string;
  seconds: number;
  itemsPerSecond: number;
  peakRssMb: number;
  redisBytesPerItem: number;
  /** Of it, the run ledger's record of the item (its items hash, MEMORY USAGE), kept after the item finishes. */
  ledgerBytesPerItem: number;
  redisCommandsPerItem: number;
  waiting: number;
  /** CPU microseconds per item: the submit process, and redis-server's main thread. */
  producerCpuUs: number;
  redisCpuUs: number;
}

async function writeManifest(path: string): Promise<void> {
  const out = createWriteStream(path);
  for (let i = 0; i < lines; i++) {
    const line = `${JSON.stringify({ id: `item-${i}`, image: `s3://bench-images/scenes/${i % 5000}.png`, question: "How many red objects are there?", answer: String(i % 7) })}\n`;
    if (!out.write(line)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

/** Peak resident memory of a process (VmHWM), read while it runs. */
async function peakRss(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const m = /VmHWM:\s+(\d+) kB/.exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

/** CPU seconds a process has used (user + system), read while it runs; null once it is gone. */
async function cpuSeconds(pid: number): Promise<number | null> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  if (text === null) return null;
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function measure(label: string, root: string, manifest: string, extraArgs: string[]): Promise<Figures> {
  const redisServer = await startRedisServer();
  const s3 = await startS3Server();
  const redis = new Redis(redisServer.url);
  try {
    const memBefore = Number(/used_memory:(\d+)/.exec(await redis.info("memory"))![1]);
    const before = await readRedis(redis);
    const args = [
      ...(process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
      "--import",
      "tsx",
      join(root, "apps/cli/main.ts"),
      "submit",
      "--run",
      "bench",
      "--manifest",
      manifest,
      "--strategy",
      "stage",
      "--beam",
      "4",
      "--max-backlog",
      String(lines * 2),
      "--chunk",
      values.chunk,
      "--no-progress",
      ...extraArgs,
    ];
    const t0 = performance.now();
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, REDIS_URL: redisServer.url, QUEUE_PREFIX: "{sb}", ...s3.env, LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    let peak = 0;
    let cpu = 0;
    const timer = setInterval(async () => {
      peak = Math.max(peak, await peakRss(child.pid!));
      cpu = (await cpuSeconds(child.pid!)) ?? cpu;
    }, 100);
    const [code] = (await once(child, "exit")) as [number];
    clearInterval(timer);
    const seconds = (performance.now() - t0) / 1000;
    if (code !== 0) throw new Error(`${label}: submit exited ${code}\n${stdout}`);
    const redisUsed = redisDelta(before, await readRedis(redis));
    const memAfter = Number(/used_memory:(\d+)/.exec(await redis.info("memory"))![1]);
    const waiting = await redis.llen("{sb}:request:wait");
    const ledgerBytes = Number(await redis.call("MEMORY", "USAGE", runKeys("{sb}", "bench").items, "SAMPLES", "0"));
    return {
      label,
      seconds,
      itemsPerSecond: lines / seconds,
      peakRssMb: peak / 2 ** 20,
      redisBytesPerItem: (memAfter - memBefore) / Math.max(1, waiting),
      ledgerBytesPerItem: ledgerBytes / lines,
      redisCommandsPerItem: redisUsed.totalCalls / lines,
      waiting,
      producerCpuUs: (cpu / lines) * 1e6,
      redisCpuUs: (redisUsed.cpuSeconds / lines) * 1e6,
    };
  } finally {
    redis.disconnect();
    await s3.stop();
    await redisServer.stop();
  }
}

const tmp = await mkdtemp(join(tmpdir(), "sb-bench-submit-"));
try {
  const manifest = join(tmp, "manifest.jsonl");
  await writeManifest(manifest);
  const rows: Figures[] = [];
  if (!values["no-baseline"]) {
    const base = join(tmp, "baseline");
    execFileSync("bash", ["-c", `mkdir -p ${base} && git -C ${repo} archive ${values.baseline} | tar -x -C ${base}`]);
    await symlink(join(repo, "node_modules"), join(base, "node_modules"));
    rows.push(await measure(`before (${values.baseline})`, base, manifest, []));
  }
  rows.push(await measure("now", repo, manifest, []));
  console.log(`bench:submit — ${lines.toLocaleString("en")} lines of s3:// images, no workers, redis-server with AOF`);
  console.log(
    `${"code".padEnd(18)}${"items/s".padStart(10)}${"peak RSS MB".padStart(13)}${"Redis B/item".padStart(14)}${"of it ledger".padStart(14)}${"cmds/item".padStart(11)}${"waiting".padStart(10)}${"CPU µs/item: producer".padStart(23)}${"Redis".padStart(7)}`,
  );
  for (const r of rows) {
    console.log(
      `${r.label.padEnd(18)}${r.itemsPerSecond.toFixed(0).padStart(10)}${r.peakRssMb.toFixed(0).padStart(13)}${r.redisBytesPerItem.toFixed(0).padStart(14)}${r.ledgerBytesPerItem.toFixed(0).padStart(14)}${r.redisCommandsPerItem.toFixed(1).padStart(11)}${String(r.waiting).padStart(10)}${r.producerCpuUs.toFixed(0).padStart(23)}${r.redisCpuUs.toFixed(0).padStart(7)}`,
    );
  }
  console.log("targets: ≥ 20,000 items/s · peak RSS ≤ 200 MB · ≤ 1,200 B of Redis per waiting item");
  const last = rows.at(-1)!;
  console.log(
    `ceilings on this machine: the producer alone ${Math.round(1e6 / last.producerCpuUs).toLocaleString("en")} items/s, Redis alone ${Math.round(1e6 / last.redisCpuUs).toLocaleString("en")} items/s (one core each, perfectly overlapped)`,
  );
} finally {
  await rm(tmp, { recursive: true, force: true });
}
