/**
 * A `stagebeam worker` process with EXECUTION_PROVIDERS=webgpu (the machine's Vulkan device:
 * Mesa's software driver on a CPU-only machine) on a real redis-server and S3 server: /readyz
 * says its decoder runs on WebGPU with the KV on the device, /metrics exports the device KV
 * bytes, and its results equal the CPU provider's in-process driver, trace for trace.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSearch } from "../../shared/core/search/index.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { REPO_ROOT, startWorkerProcesses, type WorkerProcess } from "../../apps/demo/services/worker-processes.ts";
import type { ResultRecord } from "../../workers/fleet/protocol/index.ts";
import { Engine } from "../../workers/engine/index.ts";
import { closeTrace } from "../support/approx.ts";
import { runCli } from "../support/cli.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";
import { webgpuEnv } from "../support/webgpu.ts";

const MODEL = join(REPO_ROOT, "models/stagebeam-tiny");
let env: FleetEnv;
let worker: WorkerProcess | undefined;

beforeAll(async () => {
  env = await startFleetEnv();
});
afterAll(async () => {
  await worker?.kill();
  await env?.close();
});

describe("a fleet worker on WebGPU", () => {
  it("says where it runs, and answers items as the CPU provider does", async () => {
    const sample = join(env.tmp, "sample");
    await writeSceneSet(sample, { count: 2, seed: 33 });
    [worker] = await startWorkerProcesses(1, {
      env: { ...env.env, ...webgpuEnv(), EXECUTION_PROVIDERS: "webgpu", WORKER_CONCURRENCY: "2", LOG_LEVEL: "warn" },
    });
    const ready = await (await fetch(worker!.metricsUrl.replace(/\/metrics$/, "/readyz"))).text();
    expect(ready).toContain("model ok: decoder on webgpu (KV on the device), vision on webgpu, embed on webgpu");

    const run = "webgpu-1";
    const submit = await runCli(
      [
        "submit",
        "--run",
        run,
        "--manifest",
        join(sample, "items.jsonl"),
        "--beam",
        "2",
        "--seed",
        "5",
        "--max-stage-tokens",
        "10",
        "--wait",
      ],
      env.env,
    );
    expect(submit.code, submit.stderr).toBe(0);
    expect(submit.stdout).toMatch(/2 submitted · 2 completed · 0 failed/);
    const metrics = await (await fetch(worker!.metricsUrl)).text();
    // A child job that ends its item's search closes the item, so once every item is answered the
    // worker holds no KV on the device: its device memory is back where it started.
    const held = /^stagebeam_device_kv_bytes (\d+)$/m.exec(metrics)?.[1];
    expect(held, "stagebeam_device_kv_bytes is exported").toBeDefined();
    expect(Number(held)).toBe(0);

    const results = await runCli(["results", "--run", run], env.env);
    const lines = results.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as ResultRecord);
    expect(lines).toHaveLength(2);
    const items = (await readFile(join(sample, "items.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; image: string });
    const cpu = await Engine.load(MODEL);
    try {
      for (const record of lines) {
        const image = await readFile(join(sample, items.find((i) => i.id === record.id)!.image));
        const ctx = await cpu.openItem({ id: record.item, image, question: record.question });
        const alone = await runSearch(record.params, {
          generate: (r) => cpu.generate(ctx, r),
          judge: (r) => cpu.judge(ctx, r, "score"),
        });
        cpu.closeItem(ctx);
        expect(record.search, record.id).toEqual(closeTrace(alone));
        expect(record.search.counts.generatedTokens).toBeGreaterThan(20);
      }
    } finally {
      await cpu.close();
    }
    expect(await worker!.stop(20_000)).toBe(0);
    worker = undefined;
  });
});
