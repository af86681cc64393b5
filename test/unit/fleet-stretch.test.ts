/**
 * A child job's stretch of the search (workers/fleet/worker/stretch.ts) on a scripted executor:
 * where it stops, what it times, and that stretches chained end to end give the in-process result.
 */
import { type Job, UnrecoverableError } from "bullmq";
import { describe, expect, it } from "vitest";
import { createMetrics } from "../../shared/io/metrics.ts";
import {
  advance,
  createSearch,
  parseSearchState,
  next,
  runSearch,
  type SearchExecutor,
  type SearchParamsInput,
  type SearchState,
} from "../../shared/core/search/index.ts";
import {
  ChildReturnSchema,
  PROTOCOL_VERSION,
  packState,
  type StretchJobData,
  unpackState,
} from "../../workers/fleet/protocol/index.ts";
import { ItemCache } from "../../workers/fleet/worker/item-cache.ts";
import { processChild, type WorkerContext } from "../../workers/fleet/worker/processors.ts";
import { runStretch } from "../../workers/fleet/worker/stretch.ts";
import { createScriptedHost, generateOne, h, judgeOne } from "../support/scripted-host.ts";

function scripted(calls: string[] = []): SearchExecutor {
  const score = (id: string) => (h(id) % 100) / 100;
  return {
    generate: async (requests) => {
      calls.push(`generate ${requests.length}`);
      return requests.map(generateOne);
    },
    judge: async (requests) => {
      calls.push(`judge ${requests.length}`);
      return requests.map(judgeOne);
    },
    verify: async (requests) => {
      calls.push(`verify ${requests.length}`);
      return requests.map((r) => ({ id: r.id, score: score(r.id), steps: [score(r.id)] }));
    },
  };
}

/** Chains stretches from a fresh search to its end, the way the request step does with child jobs. */
async function chain(params: SearchParamsInput, executor: SearchExecutor) {
  let state: SearchState = createSearch(params);
  const stretches: string[][] = [];
  for (;;) {
    const first = next(state);
    if (first.kind === "done") return { result: first.result, stretches };
    const s = await runStretch(state, first, executor, "w", () => 7);
    expect(s.work.length).toBeGreaterThan(0);
    stretches.push(s.work.map((w) => `${w.kind} ${w.requests}`));
    state = s.state;
  }
}

describe("a child job's stretch of the search", () => {
  it("runs every work the policy answers, and says after which works each step ended", async () => {
    const calls: string[] = [];
    const start = createSearch({ itemId: "it-1", strategy: "stage", beam: 4, seed: 5, merge: false });
    const first = next(start);
    if (first.kind !== "generate") throw new Error("expected candidates first");
    let t = 0;
    const s = await runStretch(start, first, scripted(calls), "w-1", () => (t += 10));
    expect(s.state.steps.map((st) => st.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
    expect(next(s.state).kind).toBe("done");
    // SUMMARY: 4 candidates, then a knock-out of two rounds; the step ends after those three works.
    expect(calls.slice(0, 3)).toEqual(["generate 4", "judge 2", "judge 1"]);
    expect(s.work.slice(0, 3)).toEqual([
      { id: "it-1:SUMMARY:c0", kind: "generate", requests: 4, worker: "w-1", startedAt: 10, ms: 10 },
      { id: "it-1:SUMMARY:c0-vs-c1", kind: "judge", requests: 2, worker: "w-1", startedAt: 30, ms: 10 },
      {
        id: expect.stringMatching(/^it-1:SUMMARY:c\d-vs-c\d$/),
        kind: "judge",
        requests: 1,
        worker: "w-1",
        startedAt: 50,
        ms: 10,
      },
    ]);
    expect(s.work).toHaveLength(calls.length);
    expect(s.steps).toHaveLength(4);
    expect(s.steps[0]!.works).toBe(3);
    expect(s.steps.at(-1)!.works).toBe(s.work.length);
    // Each step ends after its last work and before the next step's first.
    s.steps.slice(0, -1).forEach((end, i) => {
      expect(end.finishedAt).toBeGreaterThan(s.work[end.works - 1]!.startedAt);
      expect(end.finishedAt).toBeLessThan(s.work[end.works]!.startedAt);
      expect(end.works).toBeGreaterThan(i === 0 ? 0 : s.steps[i - 1]!.works);
    });
  });

  it("chained stretches give the in-process result: stage N=4 with the pairwise judge in one stretch", async () => {
    const params = { itemId: "it-2", strategy: "stage", beam: 4, seed: 9 } as const;
    const { result, stretches } = await chain(params, scripted());
    expect(result).toEqual(await runSearch(params, scripted()));
    expect(stretches).toHaveLength(1);
  });

  it("stops where the verifier is needed, and a verifier's stretch runs its scores alone", async () => {
    const params = { itemId: "it-3", strategy: "stage", beam: 3, seed: 2, verifier: true } as const;
    const { result, stretches } = await chain(params, scripted());
    expect(result).toEqual(await runSearch(params, scripted()));
    // Each stage: the policy's candidates, then the verifier's scores, each a stretch of its own.
    expect(stretches).toHaveLength(8);
    expect(stretches.map((works) => works.map((w) => w.split(" ")[0]))).toEqual(
      Array.from({ length: 4 }, () => [["generate"], ["verify"]]).flat(),
    );
  });

  it("runs the other strategies to the same result, in one stretch each", async () => {
    for (const strategy of ["best-of-n", "sentence", "none"] as const) {
      const params = { itemId: "it-4", strategy, beam: 3, seed: 1 };
      const { result, stretches } = await chain(params, scripted());
      expect(result).toEqual(await runSearch(params, scripted()));
      expect(stretches).toHaveLength(1);
    }
  });
});

describe("a child job on a worker", () => {
  const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);

  function child(runState: () => string) {
    const host = createScriptedHost();
    const cache = new ItemCache({ host, fetchImage: async () => PNG });
    const metrics = createMetrics({ defaultMetrics: false });
    const ctx = {
      deps: { runs: { state: async () => runState() }, metrics, worker: "w-child" },
      cache,
      host,
      verifier: null,
    } as unknown as WorkerContext;
    const start = createSearch({ itemId: "it-5", strategy: "stage", beam: 2, seed: 4 });
    const data: StretchJobData = {
      v: PROTOCOL_VERSION,
      run: "r5",
      item: { key: "it-5", image: "s3://stagebeam/images/sha256/x.png", question: "How many?" },
      state: packState(start),
    };
    const job = { data, queueName: "generate" } as unknown as Job;
    return { host, cache, run: () => processChild(job, "t", ctx), start };
  }

  it("runs its stretch on the worker's open item and returns the state it reached, a timing a work and each step's end", async () => {
    const { host, run, start } = child(() => "in_progress");
    const out = ChildReturnSchema.parse(await run());
    const end = parseSearchState(unpackState(out.state));
    expect(end).toEqual(
      await advance(start, (await host.open({ id: "it-5", image: PNG, question: "How many?" })) as SearchExecutor, () => true),
    );
    expect(out.steps).toHaveLength(4);
    expect(out.work.every((w) => w.worker === "w-child")).toBe(true);
    expect(out.model).toBe(host.digest);
  });

  it("closes the item on the worker once its search is over, not when the cache's LRU reaches it", async () => {
    const { host, cache, run } = child(() => "in_progress");
    const end = parseSearchState(unpackState(ChildReturnSchema.parse(await run()).state));
    expect(next(end).kind).toBe("done");
    await new Promise((r) => setImmediate(r));
    expect(cache.size).toBe(0);
    expect(host.stats).toMatchObject({ opens: 1, closes: 1 });
  });

  it("stops before its next work once the run is cancelled", async () => {
    let state = "in_progress";
    const { host, run } = child(() => state);
    const generate = host.open.bind(host);
    host.open = async (input) => {
      const open = await generate(input);
      return {
        ...open,
        judge: async (requests) => {
          state = "cancelled"; // cancelled while the first step's comparison ran
          return open.judge(requests);
        },
      };
    };
    const err = await run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toMatch(/^cancelled: run r5 was cancelled/);
    // SUMMARY's candidates ran, CAPTION's never did.
    expect(host.stats.generateCalls).toBe(1);
  });
});
