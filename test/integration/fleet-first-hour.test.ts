/**
 * The first hour of a real user (issue 24), on real servers (redis-server, the embedded S3)
 * with an in-process worker on the real bundled model: one output per id through retry and
 * export, OpenAI batch lines as people write them (per-line sampling settings and a system
 * message), a cancelled run continued, and the submit traps (stdin paths, --detach with local
 * images, an interrupted submit, a submit that died).
 */
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSearch } from "../../shared/core/search/index.ts";
import { paramsFor, parseSearchSettings } from "../../shared/core/search/settings.ts";
import { UsageError } from "../../shared/core/usage-error.ts";
import { loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { ResultRecordSchema, type ModelHost } from "../../workers/fleet/protocol/index.ts";
import { submitRun, type SubmitOptions } from "../../workers/fleet/feed/index.ts";
import { cancelRun, exportRun, formatStatus, retryRun, runStatus, waitForRun } from "../../workers/fleet/ops/index.ts";
import { createModelHost } from "../../workers/fleet/worker/index.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";

const logger = createLogger({ level: "silent" });
const FAST = { strategy: "none", beam: 1, seed: 3, judgeMode: "score" };

let env: FleetEnv;
let host: ModelHost;
let scenes: string;
let sceneLines: { id: string; image: string; question: string; answer: string }[];
let working = false;

beforeAll(async () => {
  env = await startFleetEnv();
  const config = loadConfig({ ...env.env, MODEL_DIR: "", MODEL_URI: "" }, ["model", "engine", "s3", "worker"]);
  host = await createModelHost(config, { logger, metrics: createMetrics({ defaultMetrics: false }) });
  scenes = join(env.tmp, "scenes");
  await writeSceneSet(scenes, { count: 24, seed: 11 });
  sceneLines = (await readFile(join(scenes, "items.jsonl"), "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as (typeof sceneLines)[number]);
});

afterAll(async () => {
  await env?.close();
  await host?.close?.();
});

/** A worker, started once (the cancel test needs the queue to wait first). */
async function startWorking() {
  if (working) return;
  working = true;
  await env.startWorker(host, { name: "w1", concurrency: 4 });
}

const deps = () => ({ queues: env.queues, store: env.store, ledger: env.ledger, runs: env.runs, logger });
const submit = (opts: Partial<SubmitOptions> & Pick<SubmitOptions, "run" | "manifest">) =>
  submitRun({ settings: FAST, chunkSize: 10, imageRoot: scenes, ...opts }, deps());
const exportDeps = () => ({ store: env.store, ledger: env.ledger, runs: env.runs, redis: env.client, prefix: env.prefix });
const finish = (run: string) => waitForRun(run, env.ledger, { runs: env.runs, timeoutMs: 60_000 });

async function writeJsonl(name: string, lines: readonly unknown[]): Promise<string> {
  const path = join(env.tmp, name);
  await writeFile(path, lines.map((l) => JSON.stringify(l)).join("\n"));
  return path;
}

const plain = (from: number, to: number) => sceneLines.slice(from, to).map((l) => ({ ...l, image: join(scenes, l.image) }));

async function exported(run: string, name: string) {
  const out = join(env.tmp, `${name}.jsonl`);
  const r = await exportRun(run, { format: "openai", out }, exportDeps());
  const read = async (path: string) =>
    (await readFile(path, "utf8"))
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as { custom_id: string; error: { code: string } | null });
  return { summary: r, output: await read(out), errors: await read(join(env.tmp, `${name}.errors.jsonl`)) };
}

describe("one output per id", () => {
  it("a cancelled run is continued by retry --reason cancelled, and plain retry says so", async () => {
    const run = "cancel-continue";
    const s = await submit({ run, manifest: await writeJsonl("cancel.jsonl", plain(0, 6)) });
    expect(s).toMatchObject({ enqueued: 6, state: "in_progress" });
    // No worker yet: every item waits, and the cancel takes them all.
    expect(await cancelRun(run, deps())).toMatchObject({ from: "in_progress", state: "cancelled", removed: 6 });
    await expect(retryRun(run, {}, deps())).rejects.toThrow(
      new UsageError(
        `run ${run} is cancelled; to continue it, retry its cancelled items: stagebeam retry --run ${run} --reason cancelled`,
      ),
    );
    await expect(submit({ run, manifest: join(env.tmp, "cancel.jsonl") })).rejects.toThrow(
      /run cancel-continue is cancelled.*stagebeam retry --run cancel-continue --reason cancelled/,
    );
    await startWorking();
    const r = await retryRun(run, { reason: "cancelled" }, deps());
    expect(r).toMatchObject({ retried: 6, notRetried: [] });
    await finish(run);
    expect((await env.runs.get(run))?.state).toBe("completed");
    expect(await env.ledger.counts(run)).toMatchObject({ items: 6, completed: 6, failed: 0 });
    const { output, errors } = await exported(run, "cancel-out");
    expect(output.map((l) => l.custom_id)).toEqual(sceneLines.slice(0, 6).map((l) => l.id));
    expect(errors).toEqual([]);
  });

  it("a duplicate id is one error line, which retry never turns into a second output line", async () => {
    await startWorking();
    const run = "dup-1";
    const [a, b, c] = plain(6, 9);
    const s = await submit({
      run,
      manifest: await writeJsonl("dup.jsonl", [
        { ...a, id: "u1" },
        { ...b, id: "u2" },
        { ...c, id: "u1" },
      ]),
    });
    expect(s).toMatchObject({ enqueued: 2, duplicates: 1 });
    await finish(run);
    const r = await retryRun(run, {}, deps());
    expect(r).toEqual({ retried: 0, notRetried: [], duplicates: 1 });
    await finish(run);
    const { summary, output, errors } = await exported(run, "dup-out");
    expect(summary).toMatchObject({ complete: true, lines: { output: 2, errors: 1 } });
    expect(output.map((l) => l.custom_id)).toEqual(["u1", "u2"]);
    expect(errors.map((l) => [l.custom_id, l.error?.code])).toEqual([["u1", "duplicate-id"]]);
  });

  it("retry --reason takes only known codes, listing them", async () => {
    const err = await retryRun("dup-1", { reason: "bogus" }, deps()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(
      /^no failure reason "bogus"; expected one of: .*\bcancelled\b.*\bimage-unreadable\b.*\bmanifest-<field>/,
    );
  });
});

describe("OpenAI batch lines as people write them", () => {
  it("honours max_tokens, temperature, top_p and seed per line, passes the system message, and records them", async () => {
    await startWorking();
    const run = "openai-as-written";
    const settingsOf = (i: number) => ({ max_tokens: 40 + i, temperature: 0.2 + i / 10, top_p: 0.5 + i / 20, seed: 100 + i });
    const lines = sceneLines.slice(9, 13).map((l, i) => ({
      custom_id: `q${i}`,
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "gpt-4o-mini",
        messages: [
          { role: "system", content: "You are a careful assistant." },
          {
            role: "user",
            content: [
              { type: "text", text: l.question },
              { type: "image_url", image_url: { url: join("scenes", l.image) } },
            ],
          },
        ],
        ...settingsOf(i),
        n: 1,
        logprobs: false,
      },
    }));
    const warnings: string[] = [];
    const bad: string[] = [];
    const s = await submit({
      run,
      manifest: await writeJsonl("openai-as-written.jsonl", lines),
      onWarning: (w) => warnings.push(w),
      onBadLine: (b) => bad.push(b.message),
    });
    expect(bad).toEqual([]);
    expect(s).toMatchObject({ enqueued: 4, bad: 0 });
    // One warning per field per run, not one per line.
    expect(warnings).toEqual([
      "body.n is accepted and ignored: one answer per request (the search's)",
      "body.logprobs is accepted and ignored: no token log-probabilities in the output (the trace has the candidates')",
    ]);
    await finish(run);
    expect(await env.ledger.counts(run)).toMatchObject({ items: 4, completed: 4, failed: 0 });
    for (const i of [0, 1, 2, 3]) {
      const record = ResultRecordSchema.parse(await env.store.getJson(`runs/${run}/results/q${i}.json`));
      const asked = settingsOf(i);
      expect(record.params).toMatchObject({
        maxStageTokens: asked.max_tokens,
        temperature: asked.temperature,
        topP: asked.top_p,
        seed: asked.seed,
      });
      expect(record.seed).toBe(asked.seed);
      expect(record.system).toBe("You are a careful assistant.");
      for (const c of record.search.steps.flatMap((st) => st.candidates)) {
        expect(c.sampleKey.startsWith(`${asked.seed}/`)).toBe(true);
        expect(c.tokens).toBeLessThanOrEqual(4 * asked.max_tokens);
      }
    }
    const { output } = await exported(run, "openai-as-written-out");
    expect(output.map((l) => l.custom_id)).toEqual(["q0", "q1", "q2", "q3"]);
    // One algorithm, two drivers: the in-process search with the item's parameters (the run's
    // settings and the line's own) and system message gives the fleet's answer, candidate for candidate.
    const record = ResultRecordSchema.parse(await env.store.getJson(`runs/${run}/results/q2.json`));
    const opened = await host.open({
      id: "q2",
      image: await readFile(join(scenes, sceneLines[11]!.image)),
      question: sceneLines[11]!.question,
      system: "You are a careful assistant.",
    });
    const asked = settingsOf(2);
    const own = { seed: asked.seed, maxStageTokens: asked.max_tokens, temperature: asked.temperature, topP: asked.top_p };
    const local = await runSearch(paramsFor("q2", parseSearchSettings(FAST), own), opened);
    opened.close();
    expect(local.text).toBe(record.search.text);
    expect(local.steps.flatMap((st) => st.candidates.map((c) => c.text))).toEqual(
      record.search.steps.flatMap((st) => st.candidates.map((c) => c.text)),
    );
  });
});

describe("submit without traps", () => {
  it("a manifest on stdin resolves relative image paths against the current directory", async () => {
    await startWorking();
    const run = "stdin-1";
    const lines = plain(13, 15).map((l) => ({ ...l, image: relative(env.tmp, l.image) }));
    const s = await submitRun(
      {
        run,
        manifest: "-",
        stdin: Readable.from([lines.map((l) => JSON.stringify(l)).join("\n")]),
        cwd: env.tmp,
        settings: FAST,
      },
      deps(),
    );
    expect(s).toMatchObject({ enqueued: 2, bad: 0 });
    await finish(run);
    expect(await env.ledger.counts(run)).toMatchObject({ items: 2, completed: 2 });
  });

  it("--image-root widens where images may live, symlinks included, while relative paths stay the manifest's", async () => {
    await startWorking();
    // A set whose images are symlinks into a data folder elsewhere.
    const set = join(env.tmp, "linked-set");
    await mkdir(set, { recursive: true });
    const lines = sceneLines.slice(15, 17).map((l) => ({ ...l, image: `img-${l.id}.png` }));
    for (const [i, l] of lines.entries()) await symlink(join(scenes, sceneLines[15 + i]!.image), join(set, l.image));
    const manifest = join(set, "items.jsonl");
    await writeFile(manifest, lines.map((l) => JSON.stringify(l)).join("\n"));
    const bad: string[] = [];
    const narrow = await submitRun(
      { run: "linked-narrow", manifest, settings: FAST, onBadLine: (b) => bad.push(b.message) },
      deps(),
    );
    expect(narrow).toMatchObject({ enqueued: 0, bad: 2 });
    expect(bad[0]).toMatch(/leads through a symlink to .*, outside the image root .*linked-set \(--image-root DIR widens it\)$/);
    const wide = await submitRun({ run: "linked-wide", manifest, settings: FAST, imageRoot: env.tmp }, deps());
    expect(wide).toMatchObject({ enqueued: 2, bad: 0 });
    await finish("linked-wide");
    expect(await env.ledger.counts("linked-wide")).toMatchObject({ items: 2, completed: 2 });
  });

  it("--detach with local images is refused before anything is created, naming the line", async () => {
    const manifest = await writeJsonl("detach-local.jsonl", plain(15, 17));
    const err = await submit({ run: "detach-local", manifest, detach: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe(
      `line 1, item "${sceneLines[15]!.id}": the image ${join(scenes, sceneLines[15]!.image)} is a file on this machine, which a detached run's feeder in the fleet cannot read; stage the images in S3 (s3://bucket/key) or inline them (data:), or submit without --detach`,
    );
    expect(await env.runs.get("detach-local")).toBeNull();
  });

  it("an interrupted submit enqueues nothing more, and status says the submit stopped and how to resume", async () => {
    await startWorking();
    const run = "interrupt-1";
    const manifest = await writeJsonl("interrupt.jsonl", plain(17, 21));
    const abort = new AbortController();
    // The whole manifest is one chunk: the interrupt comes while it is being read.
    const first = await submit({ run, manifest, chunkSize: 500, signal: abort.signal, onProgress: () => abort.abort() });
    expect(first).toMatchObject({ interrupted: true, enqueued: 0 });
    const status = await runStatus(run, env);
    expect(status.feeder).toBe("stopped");
    expect(formatStatus(status)).toMatch(
      new RegExp(
        `state      validating — the submit stopped after 0 manifest lines; resume it: stagebeam submit --run ${run} --manifest ${manifest.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`,
      ),
    );
    const second = await submit({ run, manifest, chunkSize: 500 });
    expect(second).toMatchObject({ interrupted: false, enqueued: 4 });
    await finish(run);
    expect(await env.ledger.counts(run)).toMatchObject({ items: 4, completed: 4 });
  });

  it("a submit that died is shown as stopped once its heartbeat is old", async () => {
    const run = "died-1";
    // A submit reading a stdin that has not ended yet is feeding, and says so...
    const stdin = new PassThrough();
    stdin.write(`${JSON.stringify(plain(21, 22)[0])}\n`);
    const feeding = submitRun({ run, manifest: "-", stdin, cwd: env.tmp, settings: FAST, chunkSize: 1 }, deps());
    await expect
      .poll(
        async () => {
          const st = await runStatus(run, env);
          return `${st.feeder} after ${st.meta?.cursor}`;
        },
        { timeout: 20_000 },
      )
      .toBe("feeding after 1");
    // ...while one whose process vanished without a word (its heartbeat old) is stopped, with how to resume.
    const dead = await runStatus(run, env, Date.now() + 120_000);
    expect(dead.feeder).toBe("stopped");
    expect(formatStatus(dead)).toMatch(
      /the submit stopped after 1 manifest line; resume it: pipe the same manifest to stagebeam submit --run died-1 --manifest -/,
    );
    stdin.end(`${JSON.stringify(plain(22, 23)[0])}\n`);
    expect(await feeding).toMatchObject({ interrupted: false, enqueued: 2 });
    expect((await runStatus(run, env)).feeder).toBe("done");
  });
});
