/**
 * The fleet protocol on real servers (redis-server, the embedded S3) with in-process workers
 * on the real bundled model: step jobs, fan-out/fan-in, idempotent submit, failure records,
 * status, results and metrics.
 */
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics, createRegistry } from "../../shared/io/metrics.ts";
import { createQueueExporter, runStatus, streamRecords, waitForRun } from "../../workers/fleet/ops/index.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { failureKey, resultKey } from "../../shared/io/storage/s3-store.ts";
import {
  childJobId,
  type FailureRecord,
  type ModelHost,
  requestJobId,
  type ResultRecord,
} from "../../workers/fleet/protocol/index.ts";
import { submitRun, type SubmitOptions } from "../../workers/fleet/feed/index.ts";
import { createModelHost } from "../../workers/fleet/worker/index.ts";
import { loadConfig } from "../../shared/io/config.ts";
import { closeTrace } from "../support/approx.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";

const logger = createLogger({ level: "silent" });

let env: FleetEnv;
let host: ModelHost;
let workerMetrics: ReturnType<typeof createMetrics>;
let sample: string;

beforeAll(async () => {
  env = await startFleetEnv();
  workerMetrics = createMetrics({ defaultMetrics: false });
  const config = loadConfig({ ...env.env, MODEL_DIR: "", MODEL_URI: "" }, ["model", "engine", "s3", "worker"]);
  host = await createModelHost(config, { logger, metrics: workerMetrics });
  await env.startWorker(host, { name: "w1", metrics: workerMetrics, concurrency: 4 });
  // Both workers report to one registry, as two workers in one process would: either may run
  // any item's last step, so a registry per worker would make its counts a matter of luck.
  await env.startWorker(host, { name: "w2", metrics: workerMetrics, concurrency: 4 });
  sample = join(env.tmp, "sample");
  await writeSceneSet(sample, { count: 6, seed: 11 });
});

afterAll(async () => {
  await env?.close();
  await host?.close?.();
});

const submit = (opts: Partial<SubmitOptions> & Pick<SubmitOptions, "run" | "manifest">) =>
  submitRun(
    { settings: { strategy: "stage", beam: 3, seed: 7, judgeMode: "score" }, chunkSize: 4, ...opts },
    { queues: env.queues, store: env.store, ledger: env.ledger, runs: env.runs, logger },
  );

async function records<T>(run: string, which: "results" | "failed"): Promise<T[]> {
  const out: T[] = [];
  for await (const line of streamRecords(env.store, run, which)) out.push(JSON.parse(line) as T);
  return out;
}

async function totalJobs(): Promise<number> {
  let n = 0;
  for (const q of env.queues.all) {
    const c = await q.getJobCounts();
    n += Object.values(c).reduce((s, x) => s + x, 0);
  }
  return n;
}

describe("fleet protocol on the bundled model", () => {
  it("runs each item's search to the end through step jobs, with results equal to the in-process driver", async () => {
    const run = "proto-1";
    const summary = await submit({ run, manifest: join(sample, "items.jsonl") });
    expect(summary).toMatchObject({ enqueued: 6, skipped: 0, bad: 0, interrupted: false, created: true });
    const counts = await waitForRun(run, env.ledger, { timeoutMs: 60_000 });
    expect(counts).toMatchObject({ items: 6, completed: 6, failed: 0 });

    const results = await records<ResultRecord>(run, "results");
    expect(results).toHaveLength(6);
    const lines = (await readFile(join(sample, "items.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; answer: string; image: string });
    for (const r of results) {
      // Same answer as the in-process driver over the same model, whichever worker ran what.
      const image = await readFile(join(sample, lines.find((l) => l.id === r.id)!.image));
      const open = await host.open({ id: r.item, image, question: r.question });
      expect(r.search).toEqual(closeTrace(await runSearch(r.params, open)));
      open.close();
      expect(r.params).toMatchObject({ itemId: r.item, strategy: "stage", beam: 3, seed: 7 });
      expect(r.gold).toBe(lines.find((l) => l.id === r.id)!.answer);
      expect(r.correct).toBe(r.answer === r.gold);
      expect(r.search.steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
      expect(r.search.steps.every((s) => s.candidates.length === 3)).toBe(true);
      expect(r.timings.steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
      // One job for the 3 candidates, then one a knock-out round that needs a judge (equal texts need none).
      const summary = r.search.steps[0]!;
      const judgedRounds = [0, 1].map(
        (round) => summary.comparisons.filter((c) => c.round === round && c.reason === "judge").length,
      );
      expect(r.timings.steps[0]!.work.map((w) => [w.kind, w.requests])).toEqual([
        ["generate", 3],
        ...judgedRounds.filter((n) => n > 0).map((n) => ["judge", n]),
      ]);
      expect(r.model).toEqual({ id: "stagebeam-tiny", digest: host.digest });
      expect(r.tokens.generated).toBeGreaterThan(0);
      expect(r.image).toMatch(/^s3:\/\/stagebeam\/images\/sha256\/[0-9a-f]{64}\.png$/);
    }
    // Merging was on and had equal texts to merge: the fleet asked the same smaller work as the in-process driver.
    expect(results.reduce((n, r) => n + r.search.counts.saved, 0)).toBeGreaterThan(0);
    // Child jobs have deterministic ids that hold the run; finished ones are kept a while.
    const child = await env.queues.generate.getJob(childJobId(run, `${results[0]!.item}:SUMMARY:c0`));
    expect(child?.id).toBe(`${run}/${results[0]!.item}/SUMMARY/c0`);
    expect(child?.parentKey).toBe(`{sb}:request:${requestJobId(run, results[0]!.item)}`);
    // One child job an item: every work of a stage search under the pairwise judge is the policy's, one stretch.
    const childrenOf = async (queue: (typeof env.queues.all)[number]) =>
      (await queue.getJobs(["completed", "failed", "active", "waiting", "delayed"])).filter((j) => j.id?.startsWith(`${run}/`));
    expect((await childrenOf(env.queues.generate)).length).toBe(results.length);
    expect(await childrenOf(env.queues.judge)).toEqual([]);

    const status = await runStatus(run, env);
    expect(status).toMatchObject({ done: true, pending: 0, finished: 6 });
    expect(status.accuracy?.graded).toBe(6);
    expect(status.manifest?.settings).toMatchObject({ strategy: "stage", beam: 3, seed: 7, judgeMode: "score" });

    // The workers' metrics saw the work.
    const page = await workerMetrics.registry.metrics();
    expect(page).toMatch(/stagebeam_items_completed_total 6\n/);
    expect(page).toMatch(/stagebeam_stage_latency_seconds_count\{stage="SUMMARY"\} [1-9]/);
    expect(page).toMatch(/stagebeam_tokens_generated_total [1-9]/);
    expect(page).toMatch(/stagebeam_judge_decisions_total\{stage="[A-Z]+",verdict="[12]"\} [1-9]/);
    expect(page).not.toContain("stagebeam_queue_jobs");
    // Queue depth and job totals are the exporter's, read from Redis; the workers count their finished jobs there.
    const queuePage = await createQueueExporter({
      queues: env.queues.all,
      redis: env.client,
      registry: createRegistry({ defaultMetrics: false }),
    }).metrics();
    expect(queuePage).toMatch(/^bullmq_job_count\{queue="request", ?state="completed"\} [1-9]/m);
    expect(queuePage).toMatch(/^bullmq_job_completed_total\{queue="generate"\} [1-9]/m);

    // Every queue lives under the hash-tagged prefix with its events stream (which nothing reads) trimmed to nothing.
    for (const q of ["request", "generate", "judge"]) {
      expect(await env.client.hget(`{sb}:${q}:meta`, "opts.maxLenEvents")).toBe("0");
      expect(await env.client.xlen(`{sb}:${q}:events`)).toBeLessThanOrEqual(100);
    }
  });

  it("re-running the same submit adds zero jobs", async () => {
    const run = "proto-1";
    const before = await totalJobs();
    const again = await submit({ run, manifest: join(sample, "items.jsonl") });
    expect(again).toMatchObject({ enqueued: 0, skipped: 6, bad: 0, created: false });
    expect(await totalJobs()).toBe(before);
    expect((await env.ledger.counts(run)).items).toBe(6);
  });

  it("refuses to resume a run with other settings", async () => {
    await expect(
      submit({
        run: "proto-1",
        manifest: join(sample, "items.jsonl"),
        settings: { strategy: "stage", beam: 2, seed: 7, judgeMode: "score" },
      }),
    ).rejects.toThrow(/run proto-1 was submitted with other settings \(beam: 3 ≠ 2\)/);
  });

  it("records bad lines and bad inputs as failures with their reasons while good items complete", async () => {
    const run = "proto-bad";
    const dir = join(env.tmp, "bad");
    await mkdir(dir, { recursive: true });
    const png = await readFile(join(sample, "s11-000000.png"));
    await writeFile(join(dir, "good.png"), png);
    await writeFile(join(dir, "garbage.png"), Buffer.from("this is not a png"));
    const corrupt = await env.store.putBytes(Buffer.from("not an image either"), "png");
    const lines = [
      { id: "good-1", image: "good.png", question: "How many red objects are there?", answer: "1" },
      { id: "no-question", image: "good.png" },
      { id: "outside", image: "../sample/s11-000001.png", question: "Q?" },
      { id: "missing-file", image: "nope.png", question: "Q?" },
      "{not json",
      { id: "garbage", image: "garbage.png", question: "Q?" },
      { id: "corrupt-in-s3", image: corrupt.uri, question: "Q?" },
      { id: "refused", image: "good.png", question: "How many red objects are there? ".repeat(150) },
      { id: "good 2/with odd id", image: "good.png", question: "Is there a circle?", answer: "yes" },
    ];
    await writeFile(join(dir, "m.jsonl"), `${lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n")}\n`);
    const bad: number[] = [];
    const summary = await submit({ run, manifest: join(dir, "m.jsonl"), onBadLine: (b) => bad.push(b.line) });
    expect(bad).toEqual([2, 3, 4, 5, 6]);
    expect(summary).toMatchObject({ lines: 9, enqueued: 4, bad: 5 });

    const counts = await waitForRun(run, env.ledger, { timeoutMs: 60_000 });
    expect(counts).toMatchObject({ items: 9, completed: 2, failed: 7 });
    expect(counts.failedByReason).toEqual({
      "manifest-question": 1,
      "manifest-image": 2,
      "manifest-record": 1,
      "image-unreadable": 2,
      "bad-input": 1,
    });
    const failures = await records<FailureRecord>(run, "failed");
    const byId = Object.fromEntries(failures.map((f) => [f.id ?? f.item, f]));
    expect(byId["no-question"]).toMatchObject({ stage: "submit", reason: "manifest-question", line: 2, field: "question" });
    expect(byId.outside!.message).toMatch(
      /line 3, item "outside", field "image": path "..\/sample\/s11-000001.png" escapes the image root/,
    );
    expect(byId["missing-file"]!.message).toMatch(/file not found/);
    expect(failures.find((f) => f.line === 5)).toMatchObject({ item: "line~5", reason: "manifest-record" });
    expect(byId.garbage).toMatchObject({ stage: "submit", reason: "image-unreadable" });
    expect(byId["corrupt-in-s3"]).toMatchObject({ stage: "fleet", reason: "image-unreadable", input: { image: corrupt.uri } });
    expect(byId.refused).toMatchObject({ stage: "fleet", reason: "bad-input" });
    expect(await env.store.exists(failureKey(run, "refused"))).toBe(true);

    const results = await records<ResultRecord>(run, "results");
    expect(results.map((r) => r.id).sort()).toEqual(["good 2/with odd id", "good-1"]);
    const odd = results.find((r) => r.id === "good 2/with odd id")!;
    expect(odd.item).toMatch(/^good_2_with_odd_id~[0-9a-f]{10}$/);
    expect(await env.store.exists(resultKey(run, odd.item))).toBe(true);
  });
});
