/**
 * The fleet as a user runs it: a real redis-server, the embedded S3 server, `stagebeam worker`
 * child processes on the real bundled model, `stagebeam submit/status/results`; exit codes,
 * results equal to the in-process driver, SIGTERM handling, and a producer killed mid-way.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { Engine } from "../../workers/engine/index.ts";
import { manifestKey } from "../../shared/io/storage/s3-store.ts";
import { REPO_ROOT, startWorkerProcesses, type WorkerProcess } from "../../apps/demo/services/worker-processes.ts";
import type { ResultRecord } from "../../workers/fleet/protocol/index.ts";
import { type RunStatus, waitForRun } from "../../workers/fleet/ops/index.ts";
import { runCli, startCli } from "../support/cli.ts";
import { closeTrace } from "../support/approx.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";

const SAMPLE = join(REPO_ROOT, "apps/demo/sample");
const MODEL = join(REPO_ROOT, "models/stagebeam-tiny");

let env: FleetEnv;
let sample: string;
let workerEnv: Record<string, string>;
const started: WorkerProcess[] = [];

beforeAll(async () => {
  env = await startFleetEnv();
  sample = join(env.tmp, "sample");
  await writeSceneSet(sample, { count: 8, seed: 21 });
  workerEnv = { ...env.env, WORKER_CONCURRENCY: "8", LOG_LEVEL: "warn" };
});

afterAll(async () => {
  await Promise.all(started.map((w) => w.kill()));
  await env?.close();
});

async function scrape(url: string, name: string): Promise<number> {
  const page = await (await fetch(url)).text();
  let total = 0;
  for (const line of page.split("\n"))
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.split(" ").pop());
  return total;
}

describe("stagebeam CLI and worker processes on the bundled model", () => {
  it("exits 2 on bad usage or configuration, before anything is enqueued", async () => {
    const manifest = join(sample, "items.jsonl");
    const bad = await runCli(["submit", "--run", "cli-bad", "--manifest", manifest, "--strategy", "beamsearch"], env.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /strategy must be one of none, best-of-n, sentence, stage, greedy, vote, vote-weighted, swires, got "beamsearch"/,
    );
    const beam = await runCli(["submit", "--run", "cli-bad", "--manifest", manifest, "--beam", "0"], env.env);
    expect(beam.code).toBe(2);
    expect(beam.stderr).toMatch(/beam must be an integer >= 1, got 0/);
    expect(await env.store.exists(manifestKey("cli-bad"))).toBe(false);
    expect(await env.queues.request.getJobCountByTypes("waiting", "active", "completed", "failed", "waiting-children")).toBe(0);

    const noConfig = await runCli(["status", "--run", "x"], { REDIS_URL: "", S3_BUCKET: "" });
    expect(noConfig.code).toBe(2);
    expect(noConfig.stderr).toMatch(/REDIS_URL: missing/);
    const unknownOption = await runCli(["results", "--run", "x", "--bogus"], env.env);
    expect(unknownOption.code).toBe(2);
    const helps = await Promise.all(
      ["worker", "submit", "status", "results", "demo", "scenes"].map((sub) => runCli([sub, "--help"])),
    );
    for (const help of helps) {
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^Usage: stagebeam /);
    }
  });

  it("two worker processes answer 20 items exactly as the in-process driver does; status and results report it", async () => {
    const workers = await startWorkerProcesses(2, { env: workerEnv });
    started.push(...workers);
    expect(workers.map((w) => w.ready.model)).toEqual(["stagebeam-tiny", "stagebeam-tiny"]);

    const run = "cli-1";
    const manifest = join(SAMPLE, "items.jsonl");
    const submit = await runCli(
      ["submit", "--run", run, "--manifest", manifest, "--beam", "2", "--seed", "4", "--wait"],
      env.env,
    );
    expect(submit.code, submit.stderr).toBe(0);
    expect(submit.stdout).toMatch(/enqueued\s+20/);
    expect(submit.stdout).toMatch(/20 submitted · 20 completed · 0 failed · 0 pending {2}— done/);

    const status = await runCli(["status", "--run", run, "--json"], env.env);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout) as RunStatus;
    expect(s).toMatchObject({ done: true, counts: { items: 20, completed: 20, failed: 0 } });
    expect(s.accuracy?.graded).toBe(20);

    const results = await runCli(["results", "--run", run], env.env);
    expect(results.code).toBe(0);
    const lines = results.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as ResultRecord);
    expect(lines).toHaveLength(20);
    expect(new Set(lines.map((r) => r.item)).size).toBe(20);
    expect(lines.every((r) => r.kind === "result" && r.beam === 2 && r.seed === 4)).toBe(true);
    // Work was spread over both processes.
    const ran = new Set(lines.flatMap((r) => r.timings.steps.flatMap((st) => st.work.map((w) => w.worker))));
    expect(ran.size).toBe(2);
    const failed = await runCli(["results", "--run", run, "--failed"], env.env);
    expect(failed).toMatchObject({ code: 1, stdout: "" });
    expect(failed.stderr).toContain("run cli-1 has no failure records in S3 (yet)");

    // Each result equals the in-process driver's for the same item and seed, whichever worker
    // ran which candidate and however the work was batched.
    const items = (await readFile(manifest, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; image: string });
    const engine = await Engine.load(MODEL);
    try {
      for (const record of lines) {
        const image = await readFile(join(SAMPLE, items.find((i) => i.id === record.id)!.image));
        const ctx = await engine.openItem({ id: record.item, image, question: record.question });
        const alone = await runSearch(record.params, {
          generate: (r) => engine.generate(ctx, r),
          judge: (r) => engine.judge(ctx, r, "score"),
        });
        engine.closeItem(ctx);
        expect(record.search, record.id).toEqual(closeTrace(alone));
        expect(record.model.digest).toBe(engine.info.digest);
      }
    } finally {
      await engine.close();
    }
    expect(lines.filter((r) => r.search.wellFormed).length).toBeGreaterThanOrEqual(18);

    let completed = 0;
    for (const w of workers) {
      completed += await scrape(w.metricsUrl, "stagebeam_items_completed_total");
      expect(await scrape(w.metricsUrl, "stagebeam_tokens_generated_total")).toBeGreaterThan(0);
      expect(await scrape(w.metricsUrl, "stagebeam_stage_latency_seconds_count")).toBeGreaterThan(0);
    }
    expect(completed).toBe(20);

    // Re-running the same submit adds zero jobs.
    const again = await runCli(["submit", "--run", run, "--manifest", manifest, "--beam", "2", "--seed", "4"], env.env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/enqueued\s+0\n\s+skipped\s+20/);

    for (const w of workers) expect(await w.stop(20_000)).toBe(0);
  });

  it("a producer killed mid-way and run again completes the run, each item once", async () => {
    const run = "cli-resume";
    // No workers yet: the backlog bound (2) holds the producer after two chunks of one.
    const first = startCli(
      ["submit", "--run", run, "--manifest", join(sample, "items.jsonl"), "--max-backlog", "2", "--chunk", "1", "--no-progress"],
      env.env,
    );
    await waitForCount(run, 2);
    first.child.kill("SIGKILL");
    await first.done;
    expect((await env.ledger.counts(run)).items).toBe(2);

    const workers = await startWorkerProcesses(2, { env: workerEnv });
    started.push(...workers);
    const second = await runCli(
      [
        "submit",
        "--run",
        run,
        "--manifest",
        join(sample, "items.jsonl"),
        "--max-backlog",
        "2",
        "--chunk",
        "1",
        "--wait",
        "--no-progress",
      ],
      env.env,
    );
    expect(second.code).toBe(0);
    // The feeder resumes from its cursor; the ledger skips an item whose cursor the kill lost.
    expect(second.stdout).toMatch(/\(resumed after line [12]\)/);
    expect(second.stdout).toMatch(/enqueued\s+6\n\s+skipped\s+[01]/);
    const results = (await runCli(["results", "--run", run], env.env)).stdout.trim().split("\n");
    expect(results).toHaveLength(8);
    let completed = 0;
    for (const w of workers) completed += await scrape(w.metricsUrl, "stagebeam_items_completed_total");
    expect(completed).toBe(8);
    for (const w of workers) expect(await w.stop(20_000)).toBe(0);
  });

  it("SIGTERM: a worker stops taking work, hands back what it runs after the grace period, and exits 0", async () => {
    const run = "cli-term";
    const [slow] = await startWorkerProcesses(1, { env: workerEnv, args: ["--grace", "0.2"] });
    started.push(slow!);
    const submit = await runCli(["submit", "--run", run, "--manifest", join(sample, "items.jsonl"), "--beam", "4"], env.env);
    expect(submit.code).toBe(0);
    // Wait until the slow worker is busy with candidates.
    for (let i = 0; i < 100 && (await env.queues.generate.getJobCountByTypes("active")) === 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(await env.queues.generate.getJobCountByTypes("active")).toBeGreaterThan(0);

    const t0 = Date.now();
    const code = await slow!.stop(20_000);
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(slow!.logs()).not.toMatch(/"level":(50|60)/); // no errors or fatals while stopping
    // What it held went back to the queue at once (not after the lock expired).
    expect(await env.queues.generate.getJobCountByTypes("active")).toBe(0);
    expect(await env.queues.generate.getJobCountByTypes("waiting")).toBeGreaterThan(0);

    // Another worker finishes the run; every item ends with exactly one result.
    const [fast] = await startWorkerProcesses(1, { env: workerEnv, args: ["--grace", "30"] });
    started.push(fast!);
    const counts = await waitForRun(run, env.ledger, { timeoutMs: 60_000 });
    expect(counts).toMatchObject({ items: 8, completed: 8, failed: 0 });
    const results = (await runCli(["results", "--run", run], env.env)).stdout.trim().split("\n");
    expect(results).toHaveLength(8);

    // With time to spare, a stopping worker finishes its jobs instead.
    expect(await fast!.stop(20_000)).toBe(0);
  });
});

async function waitForCount(run: string, n: number) {
  for (let i = 0; i < 300; i++) {
    if ((await env.ledger.counts(run)).items >= n) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`run ${run} never reached ${n} items`);
}
