import { describe, expect, it } from "vitest";
import type { GenerateRequest, JudgeRequest } from "../../shared/core/search/types.ts";
import { ItemCache } from "../../workers/fleet/worker/item-cache.ts";
import { BadInputError, type ChildItem } from "../../workers/fleet/protocol/index.ts";
import { createScriptedHost } from "../support/scripted-host.ts";

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);

const item = (key: string): ChildItem => ({ key, image: `s3://stagebeam/images/sha256/${key}.png`, question: "How many?" });
const gen = (itemKey: string, i: number): GenerateRequest => ({
  id: `${itemKey}:SUMMARY:c${i}`,
  prefix: "",
  stop: { kind: "stage", stage: "SUMMARY" },
  maxTokens: 64,
  sampleKey: `1/${itemKey}/SUMMARY/c${i}`,
});
const cmp = (itemKey: string): JudgeRequest => ({
  id: `${itemKey}:SUMMARY:c0-vs-c1`,
  kind: "compare",
  template: "SUMMARY",
  hint: "",
  first: "a",
  second: "b",
});

function setup(capacity = 2) {
  const host = createScriptedHost();
  const fetched: string[] = [];
  const cache = new ItemCache({
    host,
    capacity,
    fetchImage: async (uri) => {
      fetched.push(uri);
      if (uri.includes("missing")) throw new BadInputError("image-missing", `image ${uri} does not exist`);
      return PNG;
    },
  });
  return { host, cache, fetched };
}

describe("item cache", () => {
  it("fetches and opens an item once, and batches the candidates that arrive together", async () => {
    const { host, cache, fetched } = setup();
    const results = await Promise.all([0, 1, 2, 3].map((i) => cache.generate(item("a"), gen("a", i))));
    expect(results.map((r) => r.id)).toEqual([0, 1, 2, 3].map((i) => `a:SUMMARY:c${i}`));
    expect(fetched).toEqual(["s3://stagebeam/images/sha256/a.png"]);
    expect(host.stats.opens).toBe(1);
    expect(host.stats.batchSizes).toEqual([4]);
    await cache.judge(item("a"), cmp("a"));
    expect(fetched).toHaveLength(1);
    expect(cache.stats).toMatchObject({ opens: 1, imageFetches: 1, hits: 4 });
  });

  it("evicts the least recently used idle item and closes it", async () => {
    const { host, cache } = setup(2);
    await cache.generate(item("a"), gen("a", 0));
    await cache.generate(item("b"), gen("b", 0));
    await cache.generate(item("a"), gen("a", 1)); // a is now the most recent
    await cache.generate(item("c"), gen("c", 0));
    expect(cache.size).toBe(2);
    await new Promise((r) => setImmediate(r));
    expect(host.stats.closes).toBe(1);
    await cache.generate(item("a"), gen("a", 2));
    expect(host.stats.opens).toBe(3); // a stayed; b was evicted
    await cache.generate(item("b"), gen("b", 1));
    expect(host.stats.opens).toBe(4);
  });

  it("never closes an item while a job still uses it", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const closed: string[] = [];
    const host = {
      modelId: "m",
      digest: "d",
      open: async (it: { id: string }) => ({
        generate: async (reqs: GenerateRequest[]) => {
          if (it.id === "a") await gate;
          return reqs.map((r) => ({ id: r.id, text: "", tokens: 0, truncated: false }));
        },
        judge: async () => [],
        close: () => void closed.push(it.id),
      }),
    };
    const cache = new ItemCache({ host, capacity: 1, fetchImage: async () => PNG });
    const slow = cache.generate(item("a"), gen("a", 0));
    await new Promise((r) => setTimeout(r, 5));
    await cache.generate(item("b"), gen("b", 0)); // over capacity while a runs: the idle b goes
    await new Promise((r) => setImmediate(r));
    expect(closed).toEqual(["b"]);
    await cache.generate(item("c"), gen("c", 0));
    await new Promise((r) => setImmediate(r));
    expect(closed).toEqual(["b", "c"]);
    release();
    await slow;
    await new Promise((r) => setImmediate(r));
    expect(closed).toEqual(["b", "c"]); // a is kept now that it fits
    cache.closeAll();
    await new Promise((r) => setImmediate(r));
    expect(closed).toEqual(["b", "c", "a"]);
  });

  it("closes a finished item at once when told, not when the LRU reaches it", async () => {
    const { host, cache } = setup(64);
    await cache.generate(item("a"), gen("a", 0));
    await cache.generate(item("b"), gen("b", 0));
    cache.forget(item("a"));
    await new Promise((r) => setImmediate(r));
    expect(cache.size).toBe(1);
    expect(host.stats.closes).toBe(1);
    cache.forget(item("a")); // nothing left to close
    cache.forget(item("z")); // never opened here
    await new Promise((r) => setImmediate(r));
    expect(host.stats.closes).toBe(1);
    await cache.generate(item("b"), gen("b", 1));
    expect(host.stats.opens).toBe(2); // b stayed open
    await cache.generate(item("a"), gen("a", 1));
    expect(host.stats.opens).toBe(3); // a asked again (a retried item, say): opened again
  });

  it("does not cache a failed open, and tells bad input apart", async () => {
    const { cache, fetched } = setup();
    await expect(cache.generate(item("missing"), gen("missing", 0))).rejects.toMatchObject({ code: "image-missing" });
    await expect(cache.generate(item("missing"), gen("missing", 1))).rejects.toMatchObject({ code: "image-missing" });
    expect(fetched).toHaveLength(2);
    expect(cache.size).toBe(0);
  });

  it("opens an item once for every judge mode (each judge request names its own)", async () => {
    const { host, cache } = setup(4);
    await cache.judge(item("a"), { ...cmp("a"), mode: "score" });
    await cache.judge(item("a"), { ...cmp("a"), mode: "generate" });
    expect(host.stats.opens).toBe(1);
  });
});
