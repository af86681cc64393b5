/**
 * Runs as a batch service, on real servers (redis-server, the embedded S3) with in-process
 * workers on the real bundled model (strategy none, beam 1: the point is the bookkeeping):
 * run states, the OpenAI batch format in and out, cancel, retry, honest status, the feeder's
 * cursor and a detached submit fed by a worker's feed job.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { cancelRun, exportRun, listRuns, retryRun, runStatus, waitForRun } from "../../workers/fleet/ops/index.ts";
import { createModelHost } from "../../workers/fleet/worker/index.ts";
import { feedRun, type SubmitOptions, submitRun } from "../../workers/fleet/feed/index.ts";
import { RunLedger, RunRegistry } from "../../workers/fleet/books/index.ts";
import { type ModelHost, openQueues } from "../../workers/fleet/protocol/index.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";

const logger = createLogger({ level: "silent" });
const FAST = { strategy: "none", beam: 1, seed: 3, judgeMode: "score" };

let env: FleetEnv;
let host: ModelHost;
let scenes: string;
let sceneLines: { id: string; image: string; question: string; answer: string }[];

beforeAll(async () => {
  env = await startFleetEnv();
  const config = loadConfig({ ...env.env, MODEL_DIR: "", MODEL_URI: "" }, ["model", "engine", "s3", "worker"]);
  host = await createModelHost(config, { logger, metrics: createMetrics({ defaultMetrics: false }) });
  await env.startWorker(host, { name: "w1", concurrency: 4 });
  await env.startWorker(host, { name: "w2", concurrency: 4 });
  scenes = join(env.tmp, "scenes");
  await writeSceneSet(scenes, { count: 60, seed: 5 });
  sceneLines = (await readFile(join(scenes, "items.jsonl"), "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as (typeof sceneLines)[number]);
});

afterAll(async () => {
  await env?.close();
  await host?.close?.();
});

const deps = () => ({ queues: env.queues, store: env.store, ledger: env.ledger, runs: env.runs, logger });
const submit = (opts: Partial<SubmitOptions> & Pick<SubmitOptions, "run" | "manifest">) =>
  submitRun({ settings: FAST, chunkSize: 10, imageRoot: scenes, ...opts }, deps());
const exportDeps = () => ({ store: env.store, ledger: env.ledger, runs: env.runs, redis: env.client, prefix: env.prefix });

async function writeJsonl(name: string, lines: readonly unknown[]): Promise<string> {
  const path = join(env.tmp, name);
  await writeFile(path, lines.map((l) => JSON.stringify(l)).join("\n"));
  return path;
}

const plain = (from: number, to: number) => sceneLines.slice(from, to).map((l) => ({ ...l, image: join(scenes, l.image) }));

/** The OpenAI batch output line, as documented (https://platform.openai.com/docs/guides/batch). */
const OpenAIOutputLine = z.object({
  id: z.string(),
  custom_id: z.string(),
  response: z.object({
    status_code: z.literal(200),
    request_id: z.string(),
    body: z.looseObject({
      id: z.string(),
      object: z.literal("chat.completion"),
      created: z.number().int(),
      model: z.string(),
      choices: z
        .array(
          z.object({
            index: z.number().int(),
            message: z.object({ role: z.literal("assistant"), content: z.string() }),
            finish_reason: z.string(),
          }),
        )
        .length(1),
    }),
  }),
  error: z.null(),
});
const OpenAIErrorLine = z.object({
  id: z.string(),
  custom_id: z.string(),
  response: z.null(),
  error: z.object({ code: z.string(), message: z.string() }),
});

describe("runs as a batch service", () => {
  it("runs a manifest in the OpenAI batch format end to end and exports it keyed and ordered by custom_id", async () => {
    const run = "openai-1";
    const png = (i: number) => readFile(join(scenes, sceneLines[i]!.image));
    const staged = await env.store.putBytes(await png(1), ".png");
    const request = (custom_id: string, url: string, question: string, body: Record<string, unknown> = {}) => ({
      custom_id,
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "stagebeam-tiny",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: question },
              { type: "image_url", image_url: { url } },
            ],
          },
        ],
        seed: 3,
        stagebeam: { strategy: "none", beam: 1 },
        ...body,
      },
    });
    const q = (i: number) => sceneLines[i]!.question;
    const lines = [
      request("req-z", `data:image/png;base64,${(await png(0)).toString("base64")}`, q(0)),
      request("req-a", staged.uri, q(1)),
      request("req-m", pathToFileURL(join(scenes, sceneLines[2]!.image)).href, q(2)),
      request("req-web", "https://example.com/a.png", q(3)),
      request("req-seed", staged.uri, q(1), { seed: 9 }),
      request("req-b", sceneLines[4]!.image, q(4)),
    ];
    const bad: string[] = [];
    const summary = await submit({
      run,
      manifest: await writeJsonl("openai.jsonl", lines),
      onBadLine: (b) => bad.push(b.message),
    });
    expect(summary).toMatchObject({ enqueued: 4, bad: 2, state: "in_progress" });
    expect(bad).toEqual([
      expect.stringMatching(
        /^line 4, item "req-web", field "body.messages\[0\].content.image_url.url": got "https:\/\/example.com\/a.png"; http\(s\) images are not fetched/,
      ),
      'line 5, item "req-seed", field "body.seed": got 9; expected 3, the run\'s setting (a run has one set of settings: submit other settings as another run)',
    ]);
    await waitForRun(run, env.ledger, { runs: env.runs, timeoutMs: 60_000 });
    expect((await env.runs.get(run))?.state).toBe("completed");

    const out = join(env.tmp, "openai-out.jsonl");
    const r = await exportRun(run, { format: "openai", out }, exportDeps());
    expect(r).toMatchObject({ complete: true, lines: { output: 4, errors: 2 } });
    const outLines = (await readFile(out, "utf8"))
      .trim()
      .split("\n")
      .map((l) => OpenAIOutputLine.parse(JSON.parse(l)));
    expect(outLines.map((l) => l.custom_id)).toEqual(["req-z", "req-a", "req-m", "req-b"]);
    for (const l of outLines) {
      const ext = (l.response.body as { stagebeam?: { stages: Record<string, unknown>; trace: string; answer: unknown } })
        .stagebeam!;
      expect(Object.keys(ext.stages)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
      expect(ext.trace).toMatch(/^s3:\/\/stagebeam\/runs\/openai-1\/results\/req-[zamb]\.json$/);
      expect(await env.store.exists(ext.trace.replace("s3://stagebeam/", ""))).toBe(true);
    }
    const errLines = (await readFile(join(env.tmp, "openai-out.errors.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => OpenAIErrorLine.parse(JSON.parse(l)));
    expect(errLines.map((l) => [l.custom_id, l.error.code])).toEqual([
      ["req-web", "manifest-body"],
      ["req-seed", "manifest-settings"],
    ]);
    // The same files as S3 multipart uploads.
    const s3 = await exportRun(run, { format: "openai", out: "s3://stagebeam/runs/openai-1/export/output.jsonl" }, exportDeps());
    expect(s3.files).toEqual({
      output: "s3://stagebeam/runs/openai-1/export/output.jsonl",
      errors: "s3://stagebeam/runs/openai-1/export/output.errors.jsonl",
    });
    expect(Buffer.from((await env.store.getBytes("runs/openai-1/export/output.jsonl"))!).toString()).toBe(
      await readFile(out, "utf8"),
    );
  });

  it("cancels one run mid-way while another run on the same queues completes", async () => {
    const big = "cancel-big";
    const other = "cancel-other";
    await submit({ run: big, manifest: await writeJsonl("big.jsonl", plain(0, 40)) });
    await submit({ run: other, manifest: await writeJsonl("other.jsonl", plain(0, 10)) });
    for (;;) {
      if ((await env.ledger.counts(big)).completed >= 4) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const c = await cancelRun(big, deps());
    expect(c).toMatchObject({ from: "in_progress", state: "cancelled" });
    const atCancel = (await env.ledger.counts(big)).completed;
    await waitForRun(other, env.ledger, { runs: env.runs, timeoutMs: 60_000 });
    // Work in flight at the cancel may finish (at most the workers' request concurrency); nothing else starts.
    await new Promise((r) => setTimeout(r, 1_000));
    const after = await env.ledger.counts(big);
    expect(after.completed - atCancel).toBeLessThanOrEqual(8);
    expect(after.completed + after.failed).toBe(40);
    expect(after.failedByReason.cancelled).toBe(40 - after.completed);
    expect((await env.runs.get(big))?.state).toBe("cancelled");
    expect(await env.ledger.counts(other)).toMatchObject({ items: 10, completed: 10, failed: 0 });
    expect((await env.runs.get(other))?.state).toBe("completed");
    const listed = await listRuns(env);
    expect(listed.find((r) => r.run === big)).toMatchObject({ state: "cancelled", pending: 0 });
  });

  it("retries the items that failed for one reason once their images are fixed, counting each item once", async () => {
    const run = "retry-1";
    const broken = [join(env.tmp, "broken-0.png"), join(env.tmp, "broken-1.png")];
    for (const b of broken) await writeFile(b, "not an image");
    const lines = [
      ...plain(10, 13),
      { id: "fix-0", image: broken[0], question: q0(), answer: "1" },
      { id: "fix-1", image: broken[1], question: q0(), answer: "1" },
      { id: "gone", image: join(scenes, "missing.png"), question: q0() },
    ];
    const s = await submit({ run, manifest: await writeJsonl("retry.jsonl", lines), imageRoot: env.tmp });
    expect(s).toMatchObject({ enqueued: 3, bad: 3 });
    await waitForRun(run, env.ledger, { runs: env.runs, timeoutMs: 60_000 });
    const before = await runStatus(run, env);
    expect(before.counts).toMatchObject({
      items: 6,
      completed: 3,
      failed: 3,
      failedByReason: { "image-unreadable": 2, "manifest-image": 1 },
    });
    expect(before.meta?.state).toBe("completed");

    for (const b of broken) await writeFile(b, await readFile(join(scenes, sceneLines[0]!.image)));
    const r = await retryRun(run, { reason: "image-unreadable" }, deps());
    expect(r).toEqual({ retried: 2, notRetried: [] });
    await waitForRun(run, env.ledger, { runs: env.runs, timeoutMs: 60_000 });
    const after = await runStatus(run, env);
    expect(after.counts).toMatchObject({ items: 6, completed: 5, failed: 1, failedByReason: { "manifest-image": 1 } });
    expect(after.meta?.state).toBe("completed");
    const all = await retryRun(run, {}, deps());
    expect(all.retried).toBe(0);
    expect(all.notRetried).toEqual([{ item: "gone", reason: "manifest-image", why: expect.stringMatching(/fix the line/) }]);
  });

  it("resumes a feeder from its cursor: each item once", async () => {
    const run = "resume-1";
    const manifest = await writeJsonl("resume.jsonl", plain(20, 32));
    const abort = new AbortController();
    const first = await submit({
      run,
      manifest,
      chunkSize: 4,
      signal: abort.signal,
      onProgress: (p) => {
        if (p.enqueued >= 4) abort.abort();
      },
    });
    expect(first).toMatchObject({ interrupted: true, enqueued: 4 });
    expect((await env.runs.get(run))?.cursor).toBe(4);
    // An exporter following the run writes each item once, in manifest order, as it finishes.
    const following = exportRun(
      run,
      { format: "jsonl", out: "s3://stagebeam/exports/resume-1.jsonl", follow: true, pollMs: 200 },
      exportDeps(),
    );
    const second = await feedRun(run, deps(), { localImages: true });
    expect(second).toMatchObject({ resumedAt: 4, lines: 8, enqueued: 8, skipped: 0, interrupted: false });
    await waitForRun(run, env.ledger, { runs: env.runs, timeoutMs: 60_000 });
    expect(await env.ledger.counts(run)).toMatchObject({ items: 12, completed: 12, failed: 0 });
    expect(await following).toMatchObject({ complete: true, lines: { output: 12, errors: 0 } });
    const exported = Buffer.from((await env.store.getBytes("exports/resume-1.jsonl"))!)
      .toString()
      .trim()
      .split("\n");
    expect(exported.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(sceneLines.slice(20, 32).map((l) => l.id));
  });

  it("a detached submit from an S3 manifest is fed by a worker's feed job and completes", async () => {
    const run = "detach-1";
    const staged = await Promise.all(
      sceneLines
        .slice(0, 12)
        .map(async (l) => ({ ...l, image: (await env.store.putBytes(await readFile(join(scenes, l.image)), ".png")).uri })),
    );
    await env.store.putBytesAt("inputs/detach.jsonl", Buffer.from(staged.map((l) => JSON.stringify(l)).join("\n")));
    const s = await submitRun({ run, manifest: "s3://stagebeam/inputs/detach.jsonl", settings: FAST, detach: true }, deps());
    expect(s).toMatchObject({ detached: true, state: "validating", enqueued: 0 });
    await waitForRun(run, env.ledger, { runs: env.runs, timeoutMs: 60_000 });
    expect(await env.ledger.counts(run)).toMatchObject({ items: 12, completed: 12, failed: 0 });
    // The worker that completed the run mirrors the state to S3 just after the ledger says so;
    // the embedded S3 writes objects in place, so a read during that write may see half of it.
    const mirrored = () =>
      env.store.getJson<{ state: string; source: { detached: boolean } }>("runs/detach-1/manifest.json").catch(() => undefined);
    await expect.poll(async () => (await mirrored())?.state, { timeout: 10_000 }).toBe("completed");
    expect(await mirrored()).toMatchObject({ state: "completed", source: { detached: true } });
  });

  it("status with no workers reports no throughput and no ETA", async () => {
    // Queues under another prefix on the same Redis: no worker listens there.
    const prefix = "{idle}";
    const queues = openQueues(env.redis.url, prefix);
    const client = new Redis(env.redis.url);
    const ledger = new RunLedger(client, prefix);
    const runs = new RunRegistry(client, prefix);
    try {
      const manifest = await writeJsonl("idle.jsonl", [...plain(0, 5), { id: "bad", image: "nope.png", question: "Q?" }]);
      await submitRun(
        { run: "idle-1", manifest, settings: FAST, imageRoot: scenes },
        { queues, store: env.store, ledger, runs, logger },
      );
      const s = await runStatus("idle-1", { store: env.store, ledger, runs, queues });
      expect(s).toMatchObject({
        throughput: null,
        etaSeconds: null,
        pending: 5,
        workers: 0,
        stalled: "no workers are taking jobs",
      });
      expect(s.backlog).toEqual({ waiting: 5, active: 0, waitingChildren: 0, delayed: 0 });
      expect(s.meta?.state).toBe("in_progress");
    } finally {
      await queues.close();
      client.disconnect();
    }
  });
});

const q0 = () => sceneLines[0]!.question;
