/**
 * Published-layout models through the fleet: for each conformance fixture (tiny random-weight
 * LLaVA, Idefics3, Qwen2-VL and Qwen2.5-VL folders as onnx-community lays them out, and Llama-3.2-Vision
 * (mllama) as stagebeam's exporter writes it from a Hugging Face checkpoint), stage-level search N=2
 * on real servers (redis-server, embedded S3, in-process fleet workers over the engine host)
 * gives every item the same trace as the in-process driver. The text is noise: what matters is
 * that all four stages are searched (or truncated with a record) and the traces agree.
 */
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_SAMPLE } from "../../apps/cli/commands/demo.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { createModelHost } from "../../workers/fleet/worker/index.ts";
import type { ModelHost, ResultRecord } from "../../workers/fleet/protocol/index.ts";
import { submitRun } from "../../workers/fleet/feed/index.ts";
import { streamRecords, waitForRun } from "../../workers/fleet/ops/index.ts";
import { FAMILIES } from "../conformance/fixtures.ts";
import { closeTrace } from "../support/approx.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";

const logger = createLogger({ level: "silent" });
const IMAGES = ["s42-000001.png", "s42-000004.png"];

let env: FleetEnv;
let fixtures: string;
let manifest: string;

beforeAll(async () => {
  env = await startFleetEnv();
  fixtures = join(env.tmp, "fixtures");
  for (const family of ["all", "mllama"])
    execFileSync("/usr/bin/python3", ["test/conformance/make_fixtures.py", fixtures, "--family", family], { stdio: "pipe" });
  const set = join(env.tmp, "set");
  await mkdir(set, { recursive: true });
  for (const name of IMAGES) await copyFile(join(DEMO_SAMPLE, name), join(set, name));
  manifest = join(set, "items.jsonl");
  const lines = IMAGES.map((image, i) => JSON.stringify({ id: `item-${i}`, image, question: "How many red objects?" }));
  await writeFile(manifest, `${lines.join("\n")}\n`);
});

afterAll(async () => {
  await env?.close();
});

describe("published-layout models through the fleet", () => {
  for (const family of [...FAMILIES, "mllama"]) {
    it(`${family}: stage-level N=2 through BullMQ jobs gives the in-process driver's trace`, async () => {
      const config = loadConfig({ ...env.env, MODEL_DIR: join(fixtures, family) }, ["model", "engine", "s3", "worker"]);
      const host: ModelHost = await createModelHost(config, { logger, metrics: createMetrics({ defaultMetrics: false }) });
      // One family's worker at a time: a worker takes any job of the shared queues.
      const { worker } = await env.startWorker(host, { name: `${family}-w`, concurrency: 4 });
      try {
        const run = `published-${family.replaceAll("_", "-")}`;
        const summary = await submitRun(
          { run, manifest, settings: { strategy: "stage", beam: 2, seed: 3, judgeMode: "score", maxStageTokens: 8 } },
          { queues: env.queues, store: env.store, ledger: env.ledger, runs: env.runs, logger },
        );
        expect(summary.enqueued).toBe(IMAGES.length);
        const counts = await waitForRun(run, env.ledger, { timeoutMs: 120_000 });
        expect(counts).toMatchObject({ items: IMAGES.length, completed: IMAGES.length, failed: 0 });
        const results: ResultRecord[] = [];
        for await (const line of streamRecords(env.store, run, "results")) results.push(JSON.parse(line) as ResultRecord);
        expect(results).toHaveLength(IMAGES.length);
        for (const r of results) {
          expect(r.model.id).toBe(family);
          expect(r.search.steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
          expect(r.search.steps.every((s) => s.candidates.length === 2)).toBe(true);
          const image = await readFile(join(manifest, "..", IMAGES[Number(r.id.slice(-1))]!));
          const open = await host.open({ id: r.item, image, question: r.question });
          try {
            expect(r.search).toEqual(closeTrace(await runSearch(r.params, open)));
          } finally {
            open.close();
          }
        }
      } finally {
        await worker.stop({ graceMs: 2_000 });
        await host.close?.();
      }
    });
  }
});
