/**
 * The request step job's logic, without Redis: a fake BullMQ job keeps the children's results
 * the way BullMQ does (processed values, ignored failures), the scripted host plays the model.
 */
import { WaitingChildrenError, type Job } from "bullmq";
import { describe, expect, it } from "vitest";
import {
  FleetError,
  PROTOCOL_VERSION,
  packState,
  type RequestJobData,
  RequestJobDataSchema,
  type ResultRecord,
  ResultRecordSchema,
  retryPolicy,
  StretchJobDataSchema,
  unpackState,
} from "../../workers/fleet/protocol/index.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { createSearch, next, parseSearchState, runSearch } from "../../shared/core/search/index.ts";
import type { S3Store } from "../../shared/io/storage/s3-store.ts";
import type { RunLedger, RunRegistry } from "../../workers/fleet/books/index.ts";
import { recordRequestFailure, runRequestStep, stageLabel, type StepDeps } from "../../workers/fleet/worker/request-step.ts";
import { runStretch } from "../../workers/fleet/worker/stretch.ts";
import { createScriptedHost, generateOne, judgeOne } from "../support/scripted-host.ts";

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]);

interface Added {
  queue: string;
  id: string;
  data: unknown;
  opts: Record<string, unknown>;
}

class FakeQueue {
  added: Added[] = [];
  constructor(
    readonly name: string,
    private readonly job: FakeJob,
  ) {}
  get qualifiedName() {
    return `{sb}:${this.name}`;
  }
  async add(_name: string, data: unknown, opts: Record<string, unknown>) {
    const id = opts.jobId as string;
    this.added.push({ queue: this.name, id, data, opts });
    const key = `${this.qualifiedName}:${id}`;
    if (!this.job.processed.has(key) && !this.job.failed.has(key)) this.job.pending.set(key, data);
  }
  /** A failed child, which `retry` puts back among its parent's pending children, as BullMQ does. */
  async getJob(id: string) {
    const key = `${this.qualifiedName}:${id}`;
    const added = this.added.find((a) => a.id === id);
    if (!added) return undefined;
    return {
      retry: async () => {
        this.job.failed.delete(key);
        this.job.pending.set(key, added.data);
        this.retried.push(id);
      },
    };
  }
  retried: string[] = [];
  /** The parent's hashes of its children's results and failures, as Redis holds them (JSON text). */
  getBackend() {
    const job = this.job;
    const hget = async (hash: string, child: string) => {
      const [, which] = /:(processed|failed)$/.exec(hash) ?? [];
      if (!hash.startsWith(`${job.queueQualifiedName}:${job.id}:`)) return null;
      if (which === "processed") return job.processed.has(child) ? JSON.stringify(job.processed.get(child)) : null;
      return job.failed.get(child) ?? null;
    };
    return { client: Promise.resolve({ hget }) };
  }
}

class FakeJob {
  id: string;
  queueQualifiedName = "{sb}:request";
  attemptsMade = 0;
  timestamp = 1_234_000;
  opts = { attempts: 5 };
  processed = new Map<string, unknown>();
  failed = new Map<string, string>();
  pending = new Map<string, unknown>();
  updates = 0;
  constructor(public data: RequestJobData) {
    this.id = `${data.run}/${data.item.key}`;
  }
  async updateData(d: RequestJobData) {
    this.updates++;
    this.data = d;
  }
  async moveToWaitingChildren() {
    return this.pending.size > 0;
  }
  /** Runs every pending child the way a worker would: its stretch of the search on the scripted model. */
  async runChildren(fail?: (key: string) => string | undefined) {
    for (const [key, data] of this.pending) {
      const reason = fail?.(key);
      if (reason !== undefined) {
        this.failed.set(key, reason);
        continue;
      }
      const start = parseSearchState(unpackState(StretchJobDataSchema.parse(data).state));
      const first = next(start);
      if (first.kind === "done") throw new Error(`child ${key} waits for no work`);
      const executor = { generate: async (rs: never[]) => rs.map(generateOne), judge: async (rs: never[]) => rs.map(judgeOne) };
      const stretch = await runStretch(start, first, executor, "w-test", () => 1);
      this.processed.set(key, { state: packState(stretch.state), work: stretch.work, steps: stretch.steps, model: "sha256:abc" });
    }
    this.pending.clear();
  }
}

function requestData(
  overrides: Partial<{ strategy: "stage" | "best-of-n" | "none" | "sentence"; beam: number; answer: string | null }> = {},
): RequestJobData {
  return {
    v: PROTOCOL_VERSION,
    run: "r1",
    item: {
      key: "item-1",
      id: "item 1",
      image: "s3://stagebeam/images/sha256/abc.png",
      question: "How many?",
      answer: overrides.answer === undefined ? "2" : overrides.answer,
      line: 3,
    },
    judgeMode: "score",
    state: packState(
      createSearch({ itemId: "item-1", strategy: overrides.strategy ?? "stage", beam: overrides.beam ?? 4, seed: 5 }),
    ),
    trace: { submittedAt: 1_000, startedAt: null, stepStartedAt: null, work: [], steps: [], models: [], childRetries: 0 },
  };
}

function deps(job: FakeJob, store = new Map<string, unknown>()) {
  const outcomes: [string, string, number][] = [];
  const metrics = createMetrics({ defaultMetrics: false });
  let t = 10_000;
  const d: StepDeps = {
    queues: { generate: new FakeQueue("generate", job), judge: new FakeQueue("judge", job) } as unknown as StepDeps["queues"],
    store: {
      exists: async (k: string) => store.has(k),
      putJson: async (k: string, v: unknown) => void store.set(k, v),
      putJsonIfAbsent: async (k: string, v: unknown) => !store.has(k) && Boolean(store.set(k, v)),
      getJson: async (k: string) => store.get(k),
    } as unknown as S3Store,
    ledger: {
      recordOutcome: async (_run: string, item: string, outcome: string, opts: { tokens?: number } = {}) => {
        outcomes.push([item, outcome, opts.tokens ?? 0]);
        return "changed";
      },
      markWorkStarted: async () => {},
    } as unknown as RunLedger,
    runs: { state: async () => "in_progress" } as unknown as RunRegistry,
    metrics,
    model: { id: "m", digest: "sha256:abc" },
    worker: "w-parent",
    logger: createLogger({ level: "silent" }),
    retryPolicy: retryPolicy(60),
    now: () => (t += 250),
  };
  return { d, store, outcomes, metrics };
}

async function drive(job: FakeJob, d: StepDeps, fail?: (key: string) => string | undefined) {
  for (let runs = 1; runs < 200; runs++) {
    try {
      return { value: await runRequestStep(job as unknown as Job, "token", d), runs };
    } catch (err) {
      if (!(err instanceof WaitingChildrenError)) throw err;
      await job.runChildren(fail);
    }
  }
  throw new Error("did not finish");
}

describe("request step job", () => {
  it("drives the search to the same result as the in-process driver and writes the full trace", async () => {
    const job = new FakeJob(requestData());
    const { d, store, outcomes, metrics } = deps(job);
    const { value, runs } = await drive(job, d);
    expect(value.status).toBe("done");
    const record = store.get("runs/r1/results/item-1.json") as ResultRecord;
    // One child for the whole search (every work of it is the policy's), and the run that finishes.
    expect(runs).toBe(2);
    const open = await createScriptedHost().open({ id: "item-1", image: PNG, question: "How many?" });
    expect(record.search).toEqual(await runSearch({ itemId: "item-1", strategy: "stage", beam: 4, seed: 5 }, open));
    expect(record).toMatchObject({
      kind: "result",
      run: "r1",
      id: "item 1",
      item: "item-1",
      line: 3,
      gold: "2",
      strategy: "stage",
      beam: 4,
      seed: 5,
      judgeMode: "score",
      model: { id: "m", digest: "sha256:abc" },
      models: ["sha256:abc"],
      worker: "w-parent",
    });
    expect(record.correct).toBe(record.answer === "2");
    // What the worker writes is what the readers' schema (the dashboard's) accepts.
    expect(ResultRecordSchema.parse(record)).toEqual(record);
    expect(record.timings.steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
    // SUMMARY: 4 candidates in one job, then 3 comparisons in two (one per knock-out round),
    // each timed by the worker that ran it.
    expect(record.timings.steps[0]!.work.map((w) => [w.kind, w.requests])).toEqual([
      ["generate", 4],
      ["judge", 2],
      ["judge", 1],
    ]);
    expect(record.timings.steps[0]!.work.every((w) => w.worker === "w-test")).toBe(true);
    expect(record.timings.startedAt).toBe(new Date(10_250).toISOString());
    expect(outcomes).toEqual([["item-1", record.correct ? "c" : "w", record.search.counts.generatedTokens]]);
    const page = await metrics.registry.metrics();
    expect(page).toMatch(/stagebeam_stage_latency_seconds_count\{stage="REASONING"\} 1/);
    expect(page).toMatch(/stagebeam_items_completed_total 1/);
  });

  it("adds one child a stretch, with a deterministic id, the run in it, small data and an explicit failure option", async () => {
    const job = new FakeJob(requestData({ beam: 2 }));
    const { d, store } = deps(job);
    await expect(runRequestStep(job as unknown as Job, "t", d)).rejects.toBeInstanceOf(WaitingChildrenError);
    expect(RequestJobDataSchema.parse(job.data).trace?.stepStartedAt).not.toBeNull();
    const gen = (d.queues.generate as unknown as FakeQueue).added;
    expect(gen.map((a) => a.id)).toEqual(["r1/item-1/SUMMARY/c0"]);
    for (const a of gen) {
      expect(a.id).not.toContain(":");
      expect(a.opts).toMatchObject({
        ignoreDependencyOnFailure: true,
        parent: { id: "r1/item-1", queue: "{sb}:request" },
        // How often a child runs again is the worker's retry policy, behind this backoff strategy.
        backoff: { type: "stagebeam" },
      });
      expect(a.opts.removeOnComplete).toMatchObject({ age: expect.any(Number), count: expect.any(Number) });
      expect(a.opts.removeOnFail).toMatchObject({ age: expect.any(Number), count: expect.any(Number) });
      const data = StretchJobDataSchema.parse(a.data);
      expect(data.item).toEqual({ key: "item-1", image: "s3://stagebeam/images/sha256/abc.png", question: "How many?" });
      // The child carries the parent's state, whose next work is the step's candidates.
      expect(data.state).toBe(RequestJobDataSchema.parse(job.data).state);
      const work = next(parseSearchState(unpackState(data.state)));
      expect(work.kind === "generate" && work.requests.map((r) => r.id)).toEqual(["item-1:SUMMARY:c0", "item-1:SUMMARY:c1"]);
      expect(JSON.stringify(a.data).length).toBeLessThan(1_000);
    }
    // A re-run of the same step (say the worker crashed before it could wait) asks for the same id.
    job.pending.clear();
    await expect(runRequestStep(job as unknown as Job, "t", d)).rejects.toBeInstanceOf(WaitingChildrenError);
    expect(gen.map((a) => a.id)).toEqual(["r1/item-1/SUMMARY/c0", "r1/item-1/SUMMARY/c0"]);
    // Once it has run (every work of the search is the policy's), the next run finishes the item.
    await job.runChildren();
    expect(await runRequestStep(job as unknown as Job, "t", d)).toMatchObject({ status: "done" });
    expect(gen.map((a) => a.id)).toEqual(["r1/item-1/SUMMARY/c0", "r1/item-1/SUMMARY/c0"]);
    expect((d.queues.judge as unknown as FakeQueue).added).toEqual([]);
    // The stretch's works are timed one by one and grouped by step, as children of their own were.
    const record = store.get("runs/r1/results/item-1.json") as ResultRecord;
    expect(record.timings.steps.map((st) => st.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
    expect(record.timings.steps[0]!.work.map((w) => [w.id, w.kind, w.requests])).toEqual([
      ["item-1:SUMMARY:c0", "generate", 2],
      ["item-1:SUMMARY:c0-vs-c1", "judge", 1],
    ]);
    expect(record.timings.steps[1]!.work[0]).toMatchObject({ id: "item-1:CAPTION:c0", kind: "generate", requests: 2 });
  });

  it("a step that re-runs after its children finished only applies their results (nothing added twice)", async () => {
    const job = new FakeJob(requestData({ beam: 3 }));
    const { d } = deps(job);
    await expect(runRequestStep(job as unknown as Job, "t", d)).rejects.toBeInstanceOf(WaitingChildrenError);
    await job.runChildren();
    const saved = job.data;
    expect(await runRequestStep(job as unknown as Job, "t", d)).toMatchObject({ status: "done" });
    // Crash before BullMQ recorded the completion: the step runs again from the older data.
    job.data = saved;
    expect(await runRequestStep(job as unknown as Job, "t", d)).toEqual({ status: "already-done" });
    const gen = (d.queues.generate as unknown as FakeQueue).added.map((a) => a.id);
    expect(gen).toEqual(["r1/item-1/SUMMARY/c0"]);
  });

  it("fails the item with the reason of a child that failed for good", async () => {
    const job = new FakeJob(requestData({ beam: 2 }));
    const { d } = deps(job);
    const err = await drive(job, d, (key) =>
      key.endsWith("SUMMARY/c0") ? 'image-unreadable: item "item-1": image: not a PNG' : undefined,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FleetError);
    expect(err).toMatchObject({ code: "image-unreadable", unrecoverable: true });
    expect((err as Error).message).toMatch(/generate item-1:SUMMARY:c0 failed: item "item-1": image: not a PNG/);
    expect((d.queues.generate as unknown as FakeQueue).retried).toEqual([]);
  });

  it("runs a child again that failed on an S3 outage, and completes the item with its result", async () => {
    const job = new FakeJob(requestData({ beam: 2 }));
    const { d, metrics } = deps(job);
    let outage = 3;
    const result = await drive(job, d, (key) =>
      key.endsWith("SUMMARY/c0") && outage-- > 0 ? "storage: S3 GetObject images/x.png failed: ECONNREFUSED" : undefined,
    );
    expect(result.value).toMatchObject({ status: "done" });
    expect((d.queues.generate as unknown as FakeQueue).retried).toEqual(Array(3).fill("r1/item-1/SUMMARY/c0"));
    expect((job.data as RequestJobData).trace?.childRetries).toBe(3);
    expect(await metrics.registry.getSingleMetricAsString("stagebeam_retries_total")).toMatch(
      /stagebeam_retries_total\{kind="generate",reason="storage"\} 3/,
    );
  });

  it("fails the item once a child's infrastructure failures outlast the retry budget", async () => {
    const job = new FakeJob(requestData({ beam: 2 }));
    const { d } = deps(job);
    const err = await drive(job, d, (key) => (key.endsWith("SUMMARY/c0") ? "storage: S3 is down" : undefined)).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "storage", unrecoverable: true });
    // 60 s of budget: 1+2+4+8+16+29… → five retries fit, the sixth would not.
    expect((d.queues.generate as unknown as FakeQueue).retried).toHaveLength(5);
  });

  it("records a request job of another protocol version as failed (bad-job), so the item has an outcome to retry", async () => {
    const job = new FakeJob({ ...requestData(), v: 1 } as unknown as RequestJobData);
    const { d, store, outcomes } = deps(job);
    const err = await runRequestStep(job as unknown as Job, "t", d).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "bad-job", unrecoverable: true });
    await recordRequestFailure(job as unknown as Job, err, d);
    expect(store.get("runs/r1/failed/item-1.json")).toMatchObject({ kind: "failure", reason: "bad-job", id: "item 1", line: 3 });
    expect(outcomes).toEqual([["item-1", "f:bad-job", 0]]);
  });

  it("does not redo an item whose result is already in S3", async () => {
    const job = new FakeJob(requestData());
    const { d, store } = deps(job);
    store.set("runs/r1/results/item-1.json", { kind: "result", correct: true, tokens: { generated: 7 } });
    const { outcomes } = { outcomes: [] as unknown[] };
    d.ledger.recordOutcome = async (...args: unknown[]) => {
      outcomes.push(args);
      return "changed";
    };
    expect(await runRequestStep(job as unknown as Job, "t", d)).toEqual({ status: "already-done" });
    expect((d.queues.generate as unknown as FakeQueue).added).toHaveLength(0);
    // Counted from the stored result: the ledger's record of it may be what was lost.
    expect(outcomes).toEqual([["r1", "item-1", "c", { tokens: 7 }]]);
  });

  it("never overwrites a result another job for the item wrote first (Redis lost that job's completion)", async () => {
    const first = new FakeJob(requestData());
    const { d, store, outcomes } = deps(first);
    await drive(first, d);
    expect(outcomes).toHaveLength(1);
    const written = store.get("runs/r1/results/item-1.json") as ResultRecord;
    // A second job for the item, already under way when the first one finished.
    const second = new FakeJob({ ...requestData(), trace: { ...requestData().trace!, startedAt: 5 } });
    const late = deps(second, store);
    const again = await drive(second, { ...late.d, worker: "w-late" });
    expect(again.value).toEqual({ status: "already-done" });
    expect(store.get("runs/r1/results/item-1.json")).toBe(written);
    // The late job counts the item from the first result, not from its own.
    expect(late.outcomes).toEqual([["item-1", outcomes[0]![1], written.tokens.generated]]);
  });

  it("rejects malformed job data and bad search parameters as bad input", async () => {
    const job = new FakeJob({ ...requestData(), item: { ...requestData().item, image: "/local/path.png" } });
    const { d } = deps(job);
    await expect(runRequestStep(job as unknown as Job, "t", d)).rejects.toMatchObject({ code: "bad-job", unrecoverable: true });
    const state = unpackState(requestData().state!) as { params: Record<string, unknown> };
    const bad = new FakeJob({ ...requestData(), state: packState({ ...state, params: { ...state.params, beam: 0 } }) });
    await expect(runRequestStep(bad as unknown as Job, "t", deps(bad).d)).rejects.toMatchObject({
      code: "bad-params",
      unrecoverable: true,
    });
  });

  it("creates a fresh request's search from the run's settings, and drops the work of a cancelled or failed run", async () => {
    const { trace: _trace, ...untraced } = requestData();
    const fresh = new FakeJob({ ...untraced, state: null });
    const { d, store } = deps(fresh);
    d.runs = {
      state: async () => "in_progress",
      settings: async () => ({
        strategy: "stage",
        beam: 4,
        seed: 5,
        judgeMode: "score",
        maxStageTokens: 512,
        maxSentenceSteps: 40,
      }),
    } as unknown as RunRegistry;
    await drive(fresh, d);
    const record = store.get("runs/r1/results/item-1.json") as ResultRecord;
    // Settings kept before merging existed judge equal texts once, the default.
    expect(record.params).toEqual({
      itemId: "item-1",
      strategy: "stage",
      beam: 4,
      seed: 5,
      maxStageTokens: 512,
      maxSentenceSteps: 40,
      merge: true,
    });
    expect(record.timings.submittedAt).toBe(new Date(fresh.timestamp).toISOString());
    for (const [state, code] of [
      ["cancelled", "cancelled"],
      ["failed", "run-failed"],
    ] as const) {
      const job = new FakeJob(requestData());
      const stopped = deps(job).d;
      stopped.runs = { state: async () => state } as unknown as RunRegistry;
      await expect(runRequestStep(job as unknown as Job, "t", stopped)).rejects.toMatchObject({ code, unrecoverable: true });
      expect((stopped.queues.generate as unknown as FakeQueue).added).toHaveLength(0);
    }
  });

  it("also drives the other strategies", async () => {
    for (const strategy of ["none", "best-of-n", "sentence"] as const) {
      const job = new FakeJob(requestData({ strategy, beam: 3, answer: null }));
      const { d, store, outcomes } = deps(job);
      await drive(job, d);
      const record = store.get("runs/r1/results/item-1.json") as ResultRecord;
      const open = await createScriptedHost().open({ id: "item-1", image: PNG, question: "How many?" });
      expect(record.search).toEqual(await runSearch({ itemId: "item-1", strategy, beam: 3, seed: 5 }, open));
      expect(record.correct).toBeNull();
      expect(outcomes[0]![1]).toBe("d");
    }
  });

  it("labels stages for metrics without one series per sentence", () => {
    expect(stageLabel("sentence 12")).toBe("sentence");
    expect(stageLabel("REASONING")).toBe("REASONING");
    expect(stageLabel("answer")).toBe("answer");
  });
});
