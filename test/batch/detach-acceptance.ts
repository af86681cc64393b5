/**
 * `npm run test:batch`: the detached-submit acceptance, too long for `npm test`. On a real
 * redis-server, the embedded S3 and `stagebeam worker` processes on the bundled model:
 *
 *   1. a manifest of N items (default 2,000; s3:// images) is put in S3 and submitted with
 *      `stagebeam submit --detach`, which exits at once: the submitting process is gone;
 *   2. once the feeder (a worker's feed job) has fed part of it, the worker process running the
 *      feeder is killed (SIGKILL) and another one started; the feed job, stalled, is taken up
 *      by a live worker and resumes from its cursor;
 *   3. the run completes with every item exactly once: N results in S3, the ledger counting N,
 *      no item enqueued twice, and `stagebeam export --format openai` gives N lines in
 *      manifest order.
 *
 *   npm run test:batch -- [--items N] [--workers K]
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { resultsPrefix } from "../../shared/io/storage/s3-store.ts";
import { startWorkerProcesses, type WorkerProcess } from "../../apps/demo/services/worker-processes.ts";
import { feedJobId } from "../../workers/fleet/protocol/index.ts";
import { waitForRun } from "../../workers/fleet/ops/index.ts";
import { runCli } from "../support/cli.ts";
import { startFleetEnv } from "../support/fleet-env.ts";

const { values } = parseArgs({
  options: { items: { type: "string", default: "2000" }, workers: { type: "string", default: "2" } },
});
const N = Number(values.items);
const run = "accept-detach";
const t0 = Date.now();
const say = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);

const env = await startFleetEnv();
const workers: WorkerProcess[] = [];
try {
  const scenes = join(env.tmp, "scenes");
  await writeSceneSet(scenes, { count: 50, seed: 9 });
  const lines = (await readFile(join(scenes, "items.jsonl"), "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const uris = await Promise.all(
    lines.map(async (l: { image: string }) => (await env.store.putBytes(await readFile(join(scenes, l.image)), ".png")).uri),
  );
  const manifest = Array.from({ length: N }, (_, i) =>
    JSON.stringify({
      id: `item-${i}`,
      image: uris[i % uris.length],
      question: lines[i % lines.length].question,
      answer: lines[i % lines.length].answer,
    }),
  ).join("\n");
  await env.store.putBytesAt("inputs/accept.jsonl", Buffer.from(manifest));
  const workerEnv = { ...env.env, WORKER_CONCURRENCY: "8", LOG_LEVEL: "warn" };
  const start = async (name: string) => {
    const [w] = await startWorkerProcesses(1, { env: workerEnv, args: ["--name", name, "--lock-duration", "5"] });
    workers.push(w!);
    return w!;
  };
  for (let i = 0; i < Number(values.workers); i++) await start(`w${i}`);
  say(`${workers.length} workers up; submitting ${N} items with --detach`);

  const submit = await runCli(
    [
      "submit",
      "--run",
      run,
      "--manifest",
      "s3://stagebeam/inputs/accept.jsonl",
      "--strategy",
      "none",
      "--beam",
      "1",
      "--max-backlog",
      "200",
      "--chunk",
      "50",
      "--detach",
    ],
    env.env,
  );
  assert.equal(submit.code, 0, submit.stderr);
  say(`submit exited ${submit.code}: ${submit.stdout.split("\n")[0]}`);

  // Kill the worker process that runs the feeder once it has fed a part of the manifest.
  for (;;) {
    const meta = await env.runs.get(run);
    if ((meta?.cursor ?? 0) >= Math.min(400, N / 4)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const feed = await env.queues.feed.getJob(feedJobId(run));
  const feederName = feed?.processedBy;
  const feeder = workers.find((w) => w.ready.name === feederName);
  assert.ok(feeder, `no worker process named ${feederName} runs the feed job`);
  const cursorAtKill = (await env.runs.get(run))!.cursor;
  await feeder.kill();
  workers.splice(workers.indexOf(feeder), 1);
  say(`killed the feeder ${feederName} at cursor ${cursorAtKill}; starting another worker`);
  await start("w-late");

  await waitForRun(run, env.ledger, { runs: env.runs, timeoutMs: 3_600_000, pollMs: 1_000 });
  const meta = (await env.runs.get(run))!;
  const counts = await env.ledger.counts(run);
  say(`run ${meta.state}: ${counts.items} items, ${counts.completed} completed, ${counts.failed} failed`);
  assert.equal(meta.state, "completed");
  assert.deepEqual([counts.items, counts.completed, counts.failed], [N, N, 0]);
  assert.equal(meta.enqueued, N, "each item enqueued once");
  let objects = 0;
  for await (const _ of env.store.list(resultsPrefix(run))) objects++;
  assert.equal(objects, N);
  const feedAfter = await env.queues.feed.getJob(feedJobId(run));
  assert.notEqual(feedAfter?.processedBy, feederName, "a live worker finished the feeding");

  const out = join(env.tmp, "out.jsonl");
  const exp = await runCli(["export", "--run", run, "--format", "openai", "--out", out], env.env);
  assert.equal(exp.code, 0, exp.stderr);
  const ids = (await readFile(out, "utf8"))
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { custom_id: string }).custom_id);
  assert.deepEqual(
    ids,
    Array.from({ length: N }, (_, i) => `item-${i}`),
  );
  say(`exported ${ids.length} lines in manifest order; ${((N / (Date.now() - t0)) * 1000).toFixed(1)} items/s end to end — PASS`);
} finally {
  await Promise.all(workers.map((w) => w.kill()));
  await env.close();
}
