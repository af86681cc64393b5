/**
 * `npm run test:chaos`: S3 unreachable mid-run. Real redis-server, the embedded S3 behind a
 * fault-injecting proxy (fault-proxy.ts), three `stagebeam worker` processes on the bundled
 * model. N items (stage-level N=2, score judge) are submitted; once some have finished, S3 is
 * cut off for `--outage` seconds (30 by default; the long case is 180), then comes back.
 *
 * It prints: submitted / results / failures by reason / lost / done twice / answers equal to a
 * clean in-process run of the same items and settings. "Done twice" is counted soundly from the
 * proxy: every PUT of a result object passes through it, so a result written twice is a path
 * PUT twice (a retried PUT after a dropped connection counts too, which errs on the side of
 * reporting). It exits 1 unless lost = 0, done twice = 0 and every answer equals the reference.
 *
 *   npm run test:chaos -- [--items N] [--outage SECONDS]
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startWorkerProcesses, type WorkerProcess } from "../../apps/demo/services/worker-processes.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { paramsFor, type SearchSettings } from "../../shared/core/search/settings.ts";
import { loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { createModelHost } from "../../workers/fleet/engine-host.ts";
import type { FailureRecord, ResultRecord } from "../../workers/fleet/records.ts";
import { streamRecords, waitForRun } from "../../workers/fleet/status.ts";
import { runCli } from "../support/cli.ts";
import { startFleetEnv } from "../support/fleet-env.ts";
import { startFaultProxy } from "./fault-proxy.ts";

const { values } = parseArgs({
  options: { items: { type: "string", default: "60" }, outage: { type: "string", default: "30" } },
});
const N = Number(values.items);
const OUTAGE_S = Number(values.outage);
const SETTINGS: SearchSettings = {
  strategy: "stage",
  beam: 2,
  seed: 7,
  judgeMode: "score",
  maxStageTokens: 512,
  maxSentenceSteps: 40,
};
const run = "chaos-s3";
const t0 = Date.now();
const say = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);

const env = await startFleetEnv();
const s3 = new URL(env.env.S3_ENDPOINT!);
const proxy = await startFaultProxy({ host: s3.hostname, port: Number(s3.port) });
const workers: WorkerProcess[] = [];
try {
  const scenes = join(env.tmp, "scenes");
  await writeSceneSet(scenes, { count: N, seed: 31 });
  const items = (await readFile(join(scenes, "items.jsonl"), "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { id: string; image: string; question: string; answer: string });

  // The reference: the same items and settings in process, on the same model.
  const host = await createModelHost(
    loadConfig({ ...env.env, MODEL_DIR: "", MODEL_URI: "" }, ["model", "engine", "s3", "worker"]),
    {
      logger: createLogger({ level: "silent" }),
      metrics: createMetrics({ defaultMetrics: false }),
    },
  );
  const reference = new Map<string, string | null>();
  for (const item of items) {
    const open = await host.open(
      { id: item.id, image: await readFile(join(scenes, item.image)), question: item.question },
      {
        judgeMode: "score",
      },
    );
    reference.set(item.id, (await runSearch(paramsFor(item.id, SETTINGS), open)).answer);
    open.close();
  }
  await host.close?.();
  say(`reference: ${reference.size} items answered in process`);

  const workerEnv = { ...env.env, S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`, WORKER_CONCURRENCY: "4", LOG_LEVEL: "warn" };
  workers.push(...(await startWorkerProcesses(3, { env: workerEnv, args: ["--lock-duration", "30"] })));
  const submit = await runCli(
    ["submit", "--run", run, "--manifest", join(scenes, "items.jsonl"), "--strategy", "stage", "--beam", "2", "--seed", "7"],
    env.env,
  );
  assert.equal(submit.code, 0, submit.stderr);
  say(`submitted ${N} items to 3 workers`);

  for (;;) {
    const c = await env.ledger.counts(run);
    if (c.completed >= Math.max(1, Math.floor(N / 6))) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  proxy.down();
  say(`S3 down (${(await env.ledger.counts(run)).completed} items done)`);
  await new Promise((r) => setTimeout(r, OUTAGE_S * 1000));
  proxy.up();
  say(`S3 back after ${OUTAGE_S} s`);

  const counts = await waitForRun(run, env.ledger, { runs: env.runs, timeoutMs: 3_600_000, pollMs: 1_000 });
  const results: ResultRecord[] = [];
  for await (const line of streamRecords(env.store, run, "results")) results.push(JSON.parse(line) as ResultRecord);
  const failures: FailureRecord[] = [];
  for await (const line of streamRecords(env.store, run, "failed")) failures.push(JSON.parse(line) as FailureRecord);
  const byReason: Record<string, number> = {};
  for (const f of failures) byReason[f.reason] = (byReason[f.reason] ?? 0) + 1;
  const lost = N - results.length - failures.length;
  const doneTwice = [...proxy.puts].filter(([path, n]) => path.includes(`/runs/${run}/results/`) && n > 1).length;
  const equal = results.filter((r) => reference.get(r.id) === r.answer).length;
  say(
    `submitted ${N} · results ${results.length} · failures ${JSON.stringify(byReason)} · lost ${lost} · done twice ${doneTwice} · answers equal to the reference ${equal}/${results.length} · ledger ${counts.completed} completed, ${counts.failed} failed`,
  );
  assert.equal(lost, 0, "items lost");
  assert.equal(failures.length, 0, "items failed");
  assert.equal(doneTwice, 0, "results written twice");
  assert.equal(equal, N, "answers differ from the reference");
  say("PASS");
} finally {
  await Promise.all(workers.map((w) => w.kill()));
  await proxy.close();
  await env.close();
}
