/**
 * The fleet with the real bundled model, as a user runs it: a real redis-server, the embedded
 * S3 server, two `stagebeam worker` processes, `stagebeam submit/status/results` on the
 * bundled sample set. Every result must equal what the in-process driver produces for the same
 * item and seed, whichever worker ran which candidate and however the work was batched.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSearch } from "../../shared/search/index.ts";
import { Engine } from "../../workers/engine/index.ts";
import { REPO_ROOT, startWorkerProcesses, type WorkerProcess } from "../../workers/fleet/processes.ts";
import type { ResultRecord } from "../../workers/fleet/records.ts";
import { waitForRun } from "../../workers/fleet/status.ts";
import { runCli } from "../support/cli.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";

const SAMPLE = path.join(REPO_ROOT, "apps/demo/sample");
const MODEL = process.env.MODEL_DIR ?? path.join(REPO_ROOT, "models/stagebeam-tiny");
const RUN = "model-run";

let env: FleetEnv;
let workers: WorkerProcess[] = [];

beforeAll(async () => {
  env = await startFleetEnv();
  workers = await startWorkerProcesses(2, { env: { ...env.env, WORKER_CONCURRENCY: "8", LOG_LEVEL: "warn" } });
}, 180_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await env?.close();
});

async function scrape(url: string, name: string): Promise<number> {
  const page = await (await fetch(url)).text();
  return page
    .split("\n")
    .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
    .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
}

describe("the fleet on the bundled model", () => {
  it("answers 20 items with two workers exactly as the in-process driver does", async () => {
    const submitted = await runCli(
      ["submit", "--run", RUN, "--manifest", path.join(SAMPLE, "items.jsonl"), "--strategy", "stage", "--beam", "2", "--seed", "5", "--no-progress"],
      env.env,
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const counts = await waitForRun(RUN, env.ledger, { timeoutMs: 300_000 });
    expect(counts).toMatchObject({ items: 20, completed: 20, failed: 0 });

    const results = await runCli(["results", "--run", RUN], env.env);
    expect(results.code).toBe(0);
    const records = results.stdout.trim().split("\n").map((line) => JSON.parse(line) as ResultRecord);
    expect(records).toHaveLength(20);

    const items = (await readFile(path.join(SAMPLE, "items.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { id: string; image: string });
    const engine = await Engine.load(MODEL);
    try {
      for (const record of records) {
        const item = items.find((i) => i.id === record.id)!;
        const ctx = await engine.openItem({ id: record.item, image: await readFile(path.join(SAMPLE, item.image)), question: record.question });
        const alone = await runSearch(record.params, {
          generate: (r) => engine.generate(ctx, r),
          judge: (r) => engine.judge(ctx, r, "score"),
        });
        engine.closeItem(ctx);
        expect(record.search, record.id).toEqual(alone);
        expect(record.search.steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
        expect(record.model.digest).toBe(engine.info.digest);
      }
    } finally {
      await engine.close();
    }
    // The bundled model answers in the four-stage format.
    expect(records.filter((r) => r.search.wellFormed).length).toBeGreaterThanOrEqual(18);

    const status = await runCli(["status", "--run", RUN], env.env);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/completed\s+20/);

    let completed = 0;
    for (const w of workers) completed += await scrape(w.metricsUrl, "stagebeam_items_completed_total");
    expect(completed).toBe(20);
    const w0 = workers[0]!.metricsUrl;
    expect(await scrape(w0, "stagebeam_stage_latency_seconds_count")).toBeGreaterThan(0);
    expect(await scrape(w0, "stagebeam_tokens_generated_total")).toBeGreaterThan(0);
  });

  it("re-running the same submit adds zero jobs", async () => {
    const again = await runCli(["submit", "--run", RUN, "--manifest", path.join(SAMPLE, "items.jsonl"), "--strategy", "stage", "--beam", "2", "--seed", "5", "--no-progress"], env.env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout + again.stderr).toMatch(/enqueued\s+0/);
  });
});
