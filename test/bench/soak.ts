/**
 * `npm run soak`: a run end to end at scale on this machine — `submit --detach` of an N-line
 * manifest held in S3, the fleet's feeder (a worker's feed job) keeping the backlog at
 * `--max-backlog`, fleet workers over zero-latency model hosts (latency-host.ts with every delay
 * 0, many to a process: sim-workers.ts), then `export` — and prints items/s, peak Redis memory,
 * Redis CPU an item, and whether every manifest line came back exactly once.
 *
 *   npm run soak -- [--items 1000000] [--workers 8] [--processes 2] [--concurrency 16]
 *                   [--max-backlog 1000] [--strategy stage] [--beam 4]
 *
 * Not part of `npm test`: a million items take hours on 2 cores.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { startRedisServer } from "../../apps/demo/services/redis-server.ts";
import { startS3Server } from "../../apps/demo/services/s3-server.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { submitRun } from "../../workers/fleet/feed/index.ts";
import { exportRun } from "../../workers/fleet/ops/index.ts";
import { connectRedis } from "../../workers/fleet/protocol/index.ts";
import { H100_11B, type LatencyModel } from "./latency-host.ts";
import { openShard, RunWatch } from "./fleet-runs.ts";
import { readRedis, redisDelta } from "./redis-stats.ts";
import { startSimProcess, type SimProcess } from "./sim-workers.ts";

const { values } = parseArgs({
  options: {
    items: { type: "string", default: "1000000" },
    workers: { type: "string", default: "8" },
    processes: { type: "string", default: "2" },
    concurrency: { type: "string", default: "16" },
    "max-backlog": { type: "string", default: "1000" },
    strategy: { type: "string", default: "stage" },
    beam: { type: "string", default: "4" },
  },
});
const items = Number(values.items);
const workers = Number(values.workers);
const processes = Math.min(Number(values.processes), workers);
const settings = { strategy: values.strategy, beam: Number(values.beam), judgeMode: "score", seed: 1 };
const PREFIX = "{sb}";
const RUN = "soak";
const ZERO: LatencyModel = {
  ...H100_11B,
  label: "zero-latency host",
  decodeStepMs: 0,
  prefillMsPerToken: 0,
  openMs: 0,
  slots: Number(values.concurrency),
};
const t0 = performance.now();
const say = (s: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${s}`);
const MB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
const n = (x: number) => x.toLocaleString("en-US");

const tmp = await mkdtemp(join(tmpdir(), "sb-soak-"));
const redis = await startRedisServer();
const s3 = await startS3Server();
const store = S3Store.fromConfig(s3.config);
const client = connectRedis({ url: redis.url }, { maxRetriesPerRequest: 3 });
const info = new Redis(redis.url, { maxRetriesPerRequest: 3 });
const shard = openShard({ url: redis.url }, client, PREFIX);
const sims: SimProcess[] = [];
try {
  // One small image for every line (the zero-latency hosts never look at the pixels), then the
  // manifest, streamed into S3 line by line.
  const PNG = Buffer.from(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
      "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082",
    "hex",
  );
  const image = await store.putBytes(PNG, "png");
  async function* lines() {
    for (let i = 0; i < items; i++)
      yield Buffer.from(
        `${JSON.stringify({ id: `soak-${i}`, image: image.uri, question: "How many objects are there?", answer: "3" })}\n`,
      );
  }
  await store.putStream("soak/manifest.jsonl", lines(), "application/x-ndjson");
  const manifest = `s3://${s3.config.bucket}/soak/manifest.jsonl`;
  say(`${n(items)}-line manifest at ${manifest}`);

  for (let p = 0; p < processes; p++) {
    const mine = Array.from({ length: workers }, (_, i) => i).filter((i) => i % processes === p);
    sims.push(
      await startSimProcess({
        redisUrl: redis.url,
        cluster: false,
        prefixes: mine.map(() => PREFIX),
        s3: s3.config,
        model: ZERO,
        concurrency: ZERO.slots,
        name: `soak-p${p}`,
      }),
    );
  }
  say(`${workers} workers (${processes} processes, WORKER_CONCURRENCY ${ZERO.slots}) over zero-latency hosts`);

  const before = await readRedis(info);
  let peak = 0;
  const sampler = setInterval(() => {
    void info
      .info("memory")
      .then((text) => {
        peak = Math.max(peak, Number(/^used_memory:(\d+)/m.exec(text)?.[1] ?? 0));
      })
      .catch(() => {});
  }, 1000);
  const start = performance.now();
  const summary = await submitRun(
    { run: RUN, manifest, settings, maxBacklog: Number(values["max-backlog"]), detach: true },
    { queues: shard.queues, store, ledger: shard.ledger, runs: shard.runs, logger: createLogger({ level: "silent" }) },
  );
  say(`submitted --detach: run ${summary.run}, state ${summary.state}; the fleet feeds it`);
  const watch = new RunWatch(client, [[PREFIX, RUN]]);
  let done = 0;
  let last = 0;
  while (done < items) {
    await new Promise((r) => setTimeout(r, 1000));
    done = await watch.done();
    if (done - last >= Math.max(1, items / 20) || done >= items) {
      last = done;
      say(
        `${n(done)} / ${n(items)} items, ${(done / ((performance.now() - start) / 1000)).toFixed(1)} items/s, peak Redis ${MB(peak)}`,
      );
    }
  }
  const seconds = (performance.now() - start) / 1000;
  clearInterval(sampler);
  const delta = redisDelta(before, await readRedis(info));

  const out = join(tmp, "output.jsonl");
  const exported = await exportRun(
    RUN,
    { format: "jsonl", out },
    { store, ledger: shard.ledger, runs: shard.runs, redis: client, prefix: PREFIX },
  );
  const seen = new Set<string>();
  let twice = 0;
  for await (const line of createInterface({ input: createReadStream(out) })) {
    if (line === "") continue;
    const id = (JSON.parse(line) as { id: string }).id;
    if (seen.has(id)) twice++;
    seen.add(id);
  }
  let lost = 0;
  for (let i = 0; i < items; i++) if (!seen.has(`soak-${i}`)) lost++;
  const counts = await shard.ledger.counts(RUN);

  console.log(
    `\nsoak: ${n(items)} items, ${settings.strategy} N=${settings.beam} score, ${workers} workers × ${ZERO.slots} slots, --max-backlog ${values["max-backlog"]}`,
  );
  console.log(`  ${n(done)} finished in ${seconds.toFixed(0)} s: ${(items / seconds).toFixed(1)} items/s`);
  console.log(
    `  completed ${n(counts.completed)}, failed ${n(counts.failed)}; export: ${n(exported.lines.output)} lines, ${n(exported.lines.errors)} error lines`,
  );
  console.log(`  peak Redis memory ${MB(peak)} (used_memory, sampled every second)`);
  console.log(
    `  Redis CPU ${((1000 * delta.cpuSeconds) / items).toFixed(2)} ms an item (${(delta.cpuSeconds / seconds).toFixed(2)} of a core), ${n(Math.round(delta.totalCalls / items))} calls an item, ${n(Math.round(delta.netIn / items))} B in and ${n(Math.round(delta.netOut / items))} B out an item`,
  );
  console.log(`  ${n(lost)} lost, ${n(twice)} twice, ${n(exported.lines.output)} lines exported`);
  if (lost > 0 || twice > 0 || exported.lines.output !== items) process.exitCode = 1;
} finally {
  await Promise.all(sims.map((s) => s.kill()));
  await shard.queues.close().catch(() => {});
  info.disconnect();
  client.disconnect();
  store.destroy();
  await s3.stop();
  await redis.stop();
  await rm(tmp, { recursive: true, force: true });
}
