/**
 * The verifier through the fleet, on real servers (redis-server, embedded S3, in-process fleet
 * workers over the real engine): a policy worker serves generate jobs and a worker that holds
 * only the verifier serves verify jobs. Stage-level search under judge mode verifier and swires
 * (its retraces are further steps of the same request job) give every item the in-process
 * driver's trace, every score included. The verifier is the bundled one when it is there, else
 * the bundled policy as its own verifier.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSearch } from "../../shared/core/search/index.ts";
import type { SearchSettingsInput } from "../../shared/core/search/settings.ts";
import { BUNDLED_VERIFIER_DIR, loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { createModelHost, createVerifierHost } from "../../workers/fleet/worker/index.ts";
import type { ModelHost, ResultRecord, VerifierHost } from "../../workers/fleet/protocol/index.ts";
import { submitRun } from "../../workers/fleet/feed/index.ts";
import { streamRecords, waitForRun } from "../../workers/fleet/ops/index.ts";
import { closeTrace } from "../support/approx.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";
import { selfVerifierFolder } from "../support/self-verifier.ts";

const logger = createLogger({ level: "silent" });

let env: FleetEnv;
let host: ModelHost;
let verifier: VerifierHost;
let sample: string;

beforeAll(async () => {
  env = await startFleetEnv();
  const verifierDir = existsSync(BUNDLED_VERIFIER_DIR) ? BUNDLED_VERIFIER_DIR : await selfVerifierFolder(env.tmp);
  const config = loadConfig({ ...env.env, MODEL_DIR: "", MODEL_URI: "", VERIFIER_MODEL_DIR: verifierDir }, [
    "model",
    "verifier",
    "engine",
    "s3",
    "worker",
  ]);
  const deps = { logger, metrics: createMetrics({ defaultMetrics: false }) };
  host = await createModelHost(config, deps);
  verifier = await createVerifierHost(config, deps);
  await env.startWorker(host, { name: "policy", concurrency: 4 });
  await env.startWorker(null, { name: "verifier", concurrency: 4, verifier });
  sample = join(env.tmp, "sample");
  await writeSceneSet(sample, { count: 2, seed: 5 });
});

afterAll(async () => {
  await env?.close();
  await host?.close?.();
  await verifier?.close?.();
});

async function results(run: string): Promise<ResultRecord[]> {
  const out: ResultRecord[] = [];
  for await (const line of streamRecords(env.store, run, "results")) out.push(JSON.parse(line) as ResultRecord);
  return out;
}

async function runThroughFleet(run: string, settings: SearchSettingsInput): Promise<ResultRecord[]> {
  const manifest = join(sample, "items.jsonl");
  await submitRun(
    { run, manifest, settings },
    { queues: env.queues, store: env.store, ledger: env.ledger, runs: env.runs, logger },
  );
  expect(await waitForRun(run, env.ledger, { timeoutMs: 120_000 })).toMatchObject({ items: 2, completed: 2, failed: 0 });
  const records = await results(run);
  const lines = (await readFile(manifest, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { id: string; image: string });
  for (const r of records) {
    const image = await readFile(join(sample, lines.find((l) => l.id === r.id)!.image));
    const input = { id: r.item, image, question: r.question };
    const policy = await host.open(input);
    const scorer = await verifier.open(input);
    const alone = await runSearch(r.params, { ...policy, verify: (requests) => scorer.verify(requests) });
    policy.close();
    scorer.close();
    expect(r.search, r.id).toEqual(closeTrace(alone));
    // Verify jobs ran on the verifier-only worker, everything else on the policy worker.
    const work = r.timings.steps.flatMap((s) => s.work);
    expect(work.some((w) => w.kind === "verify")).toBe(true);
    for (const w of work) expect(w.worker, `${w.kind} ${w.id}`).toBe(w.kind === "verify" ? "verifier" : "policy");
    expect([...r.models].sort()).toEqual([host.digest, verifier.digest].sort());
  }
  return records;
}

describe("the verifier through the fleet", () => {
  it("stage-level search under judge mode verifier: the in-process trace, every score recorded", async () => {
    const records = await runThroughFleet("verifier-stage", {
      strategy: "stage",
      beam: 2,
      seed: 5,
      judgeMode: "verifier",
      maxStageTokens: 64,
    });
    for (const r of records) {
      expect(r.search.steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
      for (const step of r.search.steps) {
        expect(step.comparisons).toEqual([]);
        // A distinct text is scored once and its copies share the score; copies of one text alone need none.
        const scored = new Set(step.sameAs).size > 1 ? step.sameAs.map((first) => `${step.candidates[first]!.id}-verify`) : [];
        expect(step.scores.map((s) => s.id)).toEqual(scored);
        expect(step.winner).toBe(step.ranking[0]);
      }
    }
  });

  it("swires: captions, reasonings, retraces and conclusions as steps of one request job, as in process", async () => {
    const records = await runThroughFleet("verifier-swires", {
      strategy: "swires",
      beam: 1,
      seed: 5,
      judgeMode: "score",
      maxStageTokens: 64,
      // No reasoning can be the 99th best of eight: exactly one retrace, whatever the scores.
      swires: { maxRetraces: 1, retraceRank: 99 },
    });
    for (const r of records) {
      const labels = ["SUMMARY", "CAPTION", "REASONING", "CAPTION (retrace 1)", "REASONING (retrace 1)", "CONCLUSION"];
      expect(r.search.steps.map((s) => s.label)).toEqual(labels);
      expect(r.timings.steps.map((s) => s.label)).toEqual(labels);
      expect(r.search.steps.map((s) => (s.decision as { retrace?: boolean } | null)?.retrace ?? null)).toEqual([
        null,
        null,
        true,
        null,
        false,
        null,
      ]);
      expect(r.search.steps.at(-1)!.candidates).toHaveLength(3);
      // The retrace cutoff comes from the calibration the verifier workers' verifier.json carries (the bundled one has one).
      const calibrated = existsSync(BUNDLED_VERIFIER_DIR);
      expect(r.search.steps[2]!.decision).toMatchObject({ cutoffFrom: calibrated ? "verifier" : "item" });
    }
  });
});
