/** The engine on the real bundled model: numerics of the KV cache and the batcher, prefix reuse, judge, errors. */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sentenceEnd } from "../../shared/core/protocol/sentences.ts";
import { generateItem } from "../../shared/core/scenes/items.ts";
import { renderScenePng } from "../../shared/io/scene-files.ts";
import type { GenerateRequest, JudgeRequest } from "../../shared/core/search/types.ts";
import { Engine } from "../../workers/engine/engine.ts";
import { EngineRequestError, ItemInputError } from "../../workers/engine/errors.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const MODEL = path.join(ROOT, "models/stagebeam-tiny");
const TOL = 1e-4;

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

const items = [generateItem(2000, 0), generateItem(2000, 1), generateItem(2000, 2)];
const images = await Promise.all(items.map((it) => renderScenePng(it.scene)));
const open = (engine: Engine, i: number) =>
  engine.openItem({ id: items[i]!.id, image: images[i]!, question: items[i]!.question });

const stageRequests = (
  i: number,
  n: number,
  prefix = "",
  stage: "SUMMARY" | "CAPTION" = "SUMMARY",
  maxTokens = 24,
): GenerateRequest[] =>
  Array.from({ length: n }, (_, c) => ({
    id: `${items[i]!.id}:${stage}:c${c}`,
    prefix,
    stop: { kind: "stage", stage },
    maxTokens,
    sampleKey: `5/${items[i]!.id}/${stage}/c${c}`,
  }));
const answerRequests = (i: number, n: number, maxTokens = 30): GenerateRequest[] =>
  Array.from({ length: n }, (_, c) => ({
    id: `${items[i]!.id}:answer:c${c}`,
    prefix: "",
    stop: { kind: "end" },
    maxTokens,
    sampleKey: `5/${items[i]!.id}/answer/c${c}`,
  }));

describe("engine on the bundled model", () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(MODEL, { maxBatch: 16 });
  });
  afterAll(async () => {
    await engine?.close();
  });

  it("decoding with the KV cache gives the logits of a full no-cache pass", async () => {
    const { runner, scheduler } = engine.internals;
    const ctx = await open(engine, 0);
    const tail = engine.tokenizer.encode("<SUMMARY>I will count the objects and look at their colors.</SUMMARY><CAPTION>");
    expect(tail.length).toBeGreaterThan(5);
    const image = { features: ctx.features!, first: 0 };
    // Cached: the prompt once, then one token per decoder call.
    const [start] = await scheduler.prefill([{ base: null, ids: ctx.promptIds, image, keepKv: true }]);
    let past = ctx.promptIds.length;
    let pastData: unknown = start!.kv!.store;
    const cached: Float32Array[] = [start!.logits];
    for (const token of tail) {
      const out = await runner.forward({
        rows: 1,
        steps: 1,
        past,
        embeds: await runner.embedIds([token]),
        mask: new BigInt64Array(past + 1).fill(1n),
        positions: BigInt64Array.from([BigInt(past)]),
        cache: pastData as never,
      });
      cached.push(out.logits);
      pastData = out.present;
      past++;
    }
    // Full passes over every prefix, no cache at all.
    let worst = 0;
    for (let k = 0; k <= tail.length; k++) {
      const ids = [...ctx.promptIds, ...tail.slice(0, k)];
      const [full] = await scheduler.prefill([{ base: null, ids, image, keepKv: false }]);
      worst = Math.max(worst, maxDiff(full!.logits, cached[k]!));
    }
    expect(worst).toBeLessThan(TOL);
    engine.closeItem(ctx);
  });

  it("a batched decode step equals the unbatched steps for sequences of different lengths", async () => {
    const { runner, scheduler } = engine.internals;
    const ctxs = await Promise.all([0, 1, 2].map((i) => open(engine, i)));
    const extra = engine.tokenizer.encode("<SUMMARY>I will count the red objects.</SUMMARY><CAPTION>There are");
    const seqs = ctxs.map((c, i) => [...c.promptIds, ...extra.slice(0, 2 + 4 * i)]);
    const singles = [];
    for (let i = 0; i < 3; i++) {
      singles.push(
        (
          await scheduler.prefill([
            { base: null, ids: seqs[i]!, image: { features: ctxs[i]!.features!, first: 0 }, keepKv: true },
          ])
        )[0]!,
      );
    }
    // Batched prefill of rows that continue caches of different lengths.
    const bases = ctxs.map((c) => c.cache.best(c.promptIds)!.entry.kv);
    const continued = await scheduler.prefill(
      seqs.map((s, i) => ({ base: bases[i]!, ids: s.slice(ctxs[i]!.promptIds.length), keepKv: true })),
    );
    for (let i = 0; i < 3; i++) expect(maxDiff(continued[i]!.logits, singles[i]!.logits)).toBeLessThan(TOL);

    // Two batched steps (the second feeds `present` back as `past`) against single-row steps.
    const { vocab } = runner;
    const steps = [
      [40, 41, 42],
      [50, 51, 52],
    ].map((row) => row.map((t) => t % engine.tokenizer.vocabSize));
    const lengths = singles.map((s) => s.kv!.length);
    let P = Math.max(...lengths);
    let batchCache: unknown = await runner.kv.gather(
      singles.map((s) => s.kv!),
      P,
    );
    const singleCache: unknown[] = singles.map((s) => s.kv!.store);
    const singleLen = [...lengths];
    let worst = 0;
    for (const tokens of steps) {
      const mask = new BigInt64Array(3 * (P + 1));
      lengths.forEach((L, b) => {
        mask.fill(1n, b * (P + 1) + P - L, (b + 1) * (P + 1));
      });
      const batched = await runner.forward({
        rows: 3,
        steps: 1,
        past: P,
        embeds: await runner.embedIds(tokens),
        mask,
        positions: BigInt64Array.from(lengths, (L) => BigInt(L)),
        cache: batchCache as never,
      });
      for (let b = 0; b < 3; b++) {
        const L = singleLen[b]!;
        const one = await runner.forward({
          rows: 1,
          steps: 1,
          past: L,
          embeds: await runner.embedIds([tokens[b]!]),
          mask: new BigInt64Array(L + 1).fill(1n),
          positions: BigInt64Array.from([BigInt(L)]),
          cache: singleCache[b] as never,
        });
        worst = Math.max(worst, maxDiff(one.logits, batched.logits.subarray(b * vocab, (b + 1) * vocab)));
        singleCache[b] = one.present;
        singleLen[b] = L + 1;
      }
      batchCache = batched.present;
      P++;
      for (let b = 0; b < lengths.length; b++) lengths[b]!++;
    }
    expect(worst).toBeLessThan(TOL);
    for (const c of ctxs) engine.closeItem(c);
  });

  it("generate() gives the same results alone and batched with another item's requests", async () => {
    const reqA = stageRequests(0, 4);
    const reqB = answerRequests(1, 4);
    const alone = await Engine.load(MODEL, { maxBatch: 16 });
    const [a0, b0] = [await open(alone, 0), await open(alone, 1)];
    const aloneA = await alone.generate(a0, reqA);
    const aloneB = await alone.generate(b0, reqB);
    // The next stage, continuing an accepted prefix (cached once for the item).
    const prefix = aloneA.find((r) => !r.truncated)?.text ?? aloneA[0]!.text;
    const reqA2 = stageRequests(0, 3, prefix, "CAPTION");
    const aloneA2 = await alone.generate(a0, reqA2);
    expect(alone.counters().maxDecodeBatch).toBeLessThanOrEqual(4);
    await alone.close();

    const batchSizes: number[] = [];
    const shared = await Engine.load(MODEL, { maxBatch: 16, observer: { decodeStep: (rows) => batchSizes.push(rows) } });
    const [a1, b1] = await Promise.all([open(shared, 0), open(shared, 1)]);
    const [togetherA, togetherB, togetherA2] = await Promise.all([
      shared.generate(a1, reqA),
      shared.generate(b1, reqB),
      shared.generate(a1, reqA2),
    ]);
    expect(shared.counters().maxDecodeBatch).toBeGreaterThan(4); // the items really shared decoder calls
    expect(Math.max(...batchSizes)).toBe(shared.counters().maxDecodeBatch);
    expect(batchSizes.length).toBe(shared.counters().decodeSteps);
    expect(togetherA).toEqual(aloneA);
    expect(togetherB).toEqual(aloneB);
    expect(togetherA2).toEqual(aloneA2);
    await shared.close();

    // One sequence per decoder call: still the same.
    const narrow = await Engine.load(MODEL, { maxBatch: 1 });
    const a2 = await open(narrow, 0);
    expect(await narrow.generate(a2, reqA)).toEqual(aloneA);
    expect(narrow.counters().maxDecodeBatch).toBe(1);
    await narrow.close();

    for (const r of [...aloneA, ...aloneA2]) {
      expect(r.tokens).toBeLessThanOrEqual(24);
      if (!r.truncated && !r.finished) expect(r.text.endsWith("</SUMMARY>") || r.text.endsWith("</CAPTION>")).toBe(true);
    }
  });

  it("releases every KV store it held once its items close", async () => {
    const own = await Engine.load(MODEL, { maxBatch: 3, prefixCacheEntries: 2 });
    expect(own.kvMemory()).toEqual({ place: "host", bytes: 0, stores: 0 });
    const [a, b] = await Promise.all([open(own, 0), open(own, 1)]);
    const first = await own.generate(a, stageRequests(0, 4));
    const prefix = first.find((r) => !r.truncated)?.text ?? first[0]!.text;
    // Two items at once, more sequences than a batch holds, an evicting prefix cache, a judge call.
    await Promise.all([own.generate(a, stageRequests(0, 3, prefix, "CAPTION")), own.generate(b, answerRequests(1, 4))]);
    await own.judge(a, [
      { id: "j", kind: "compare", template: "SUMMARY", hint: "", first: first[0]!.text, second: first[1]!.text },
    ]);
    expect(own.kvMemory().stores).toBeGreaterThan(0); // the items' prefix caches
    own.closeItem(a);
    own.closeItem(b);
    expect(own.kvMemory()).toEqual({ place: "host", bytes: 0, stores: 0 });
    await own.close();
  });

  it("encodes each accepted prefix once per item", async () => {
    const ctx = await open(engine, 2);
    const prefix = "<SUMMARY>I will count the objects.</SUMMARY>";
    const prefixTokens = engine.tokenizer.encode(prefix).length;
    const before = engine.counters();
    await engine.generate(ctx, stageRequests(2, 4, prefix, "CAPTION", 4));
    const mid = engine.counters();
    await engine.generate(
      ctx,
      stageRequests(2, 4, prefix, "CAPTION", 4).map((r) => ({ ...r, sampleKey: `${r.sampleKey}/again` })),
    );
    const after = engine.counters();
    expect(mid.prefillTokens - before.prefillTokens).toBe(prefixTokens);
    expect(mid.cachedTokens - before.cachedTokens).toBe(ctx.promptTokens);
    expect(after.prefillTokens - mid.prefillTokens).toBe(0);
    engine.closeItem(ctx);
  });

  it("the reference work pattern gives the same answers at a higher cost", async () => {
    const reference = await Engine.load(MODEL, { reference: true });
    const sentences: GenerateRequest[] = Array.from({ length: 3 }, (_, c) => ({
      id: `${items[0]!.id}:s1:c${c}`,
      prefix: "",
      stop: { kind: "sentence" },
      maxTokens: 20,
      sampleKey: `5/${items[0]!.id}/s1/c${c}`,
    }));
    const reqs = [...stageRequests(0, 2), ...answerRequests(0, 1, 12), ...sentences];
    const ctxR = await open(reference, 0);
    const ctxE = await open(engine, 0);
    const before = engine.counters();
    const fast = await engine.generate(ctxE, reqs);
    const cost = engine.counters();
    const slow = await reference.generate(ctxR, reqs);
    expect(slow).toEqual(fast);
    for (const r of fast.slice(3)) {
      // A sentence candidate ends exactly at the first sentence end of the shared rule (the
      // text that followed, a space or an opening tag, was the dropped lookahead).
      if (!r.truncated && !r.finished) expect(sentenceEnd(`${r.text} `)).toBe(r.text.length);
    }
    const r = reference.counters();
    expect(r.visionCalls).toBe(reqs.length);
    expect(r.decoderCalls).toBeGreaterThan(cost.decoderCalls - before.decoderCalls);
    expect(r.decoderTokens).toBeGreaterThan(cost.decoderTokens - before.decoderTokens);
    await reference.close();
    engine.closeItem(ctxE);
  });

  it("judges in score mode: the prompts' shared prefix once, then both orders of every request in one batched call", async () => {
    const ctx = await open(engine, 0);
    const a = "<SUMMARY>I will count the red objects.</SUMMARY>";
    const b = "<SUMMARY>I will look at the shapes.</SUMMARY>";
    const reqs: JudgeRequest[] = [
      { id: "i:SUMMARY:c0-vs-c1", kind: "compare", template: "SUMMARY", hint: "", first: a, second: b },
      { id: "i:SUMMARY:c1-vs-c0", kind: "compare", template: "SUMMARY", hint: "", first: b, second: a },
      {
        id: "i:REASONING:c0-check",
        kind: "check",
        template: "reasoning_check",
        hint: a,
        candidate: "<REASONING>1 + 1 = 2.</REASONING>",
      },
    ];
    const before = engine.counters();
    const [ab, ba, check] = await engine.judge(ctx, reqs, "score");
    const after = engine.counters();
    expect(after.decoderCalls - before.decoderCalls).toBe(2);
    // Asked again, the shared prefix comes from the item's cache: one call, fewer tokens.
    await engine.judge(ctx, reqs, "score");
    const again = engine.counters();
    expect(again.decoderCalls - after.decoderCalls).toBe(1);
    expect(again.decoderTokens - after.decoderTokens).toBeLessThan(after.decoderTokens - before.decoderTokens);
    const sab = (ab!.detail as { score: number }).score;
    const sba = (ba!.detail as { score: number }).score;
    expect(sab).toBeCloseTo(-sba, 4);
    expect(ab!.verdict).toBe(sab >= 0 ? 1 : 2);
    expect(check!.verdict === "correct" || check!.verdict === "incorrect").toBe(true);
    expect(check!.detail).toMatchObject({ mode: "score" });

    const gen = await engine.judge(ctx, reqs.slice(0, 1), "generate");
    const detail = gen[0]!.detail as { mode: string; parsed: boolean; fallback?: unknown; text: string };
    expect(detail.mode).toBe("generate");
    if (!detail.parsed) expect(detail.fallback).toMatchObject({ mode: "score" });
    // Seeded from the request id: the same answer again.
    expect(await engine.judge(ctx, reqs.slice(0, 1), "generate")).toEqual(gen);
    engine.closeItem(ctx);
  });

  it("stops a sequence at the context window and reports it as truncated", async () => {
    const ctx = await open(engine, 1);
    const limit = engine.info.contextLength;
    if (limit === null) return;
    const [r] = await engine.generate(
      ctx,
      [{ id: "x:answer:c0", prefix: "", stop: { kind: "end" }, maxTokens: 4 * limit, sampleKey: "ctx" }],
      {
        greedy: true,
      },
    );
    if (!r!.finished) {
      expect(r!.truncated).toBe(true);
      expect(r!.detail).toMatchObject({ finish: "context" });
      expect(ctx.promptTokens + r!.tokens).toBe(limit);
    }
    engine.closeItem(ctx);
  });

  it("fails a bad prefill row alone, not the batch it was queued with", async () => {
    const { scheduler } = engine.internals;
    const ctx = await open(engine, 0);
    const good = scheduler.prefill([
      { base: null, ids: ctx.promptIds, image: { features: ctx.features!, first: 0 }, keepKv: false },
    ]);
    const bad = scheduler.prefill([{ base: null, ids: ctx.promptIds, keepKv: false }]);
    await expect(bad).rejects.toThrow(/has \d+ image tokens but 0 image features/);
    await expect(good).resolves.toHaveLength(1);
    engine.closeItem(ctx);
  });

  it("falls back to CPU when a configured execution provider cannot start, and says why", async () => {
    const warnings: { obj: object; msg: string }[] = [];
    const logger = { warn: (obj: object, msg: string) => warnings.push({ obj, msg }), info: () => undefined };
    const e = await Engine.load(MODEL, { executionProviders: ["cuda", "cpu"], intraOpThreads: 1, logger });
    if (e.info.providers.decoder === "cpu") {
      expect(e.info.providerFailures.cuda).toMatch(/\S/);
      expect(warnings.length).toBe(1);
      expect(warnings[0]!.msg).toMatch(/execution provider cuda failed to initialise; falling back/);
    }
    const ctx = await open(e, 0);
    expect((await e.generate(ctx, answerRequests(0, 1, 3)))[0]!.tokens).toBeGreaterThanOrEqual(0);
    await e.close();
  });

  it("rejects bad items with errors that name the item and field", async () => {
    const long = Array(engine.info.contextLength ?? 4096)
      .fill("red")
      .join(" ");
    await expect(engine.openItem({ id: "too-long", image: images[0]!, question: long })).rejects.toThrow(
      /item "too-long": question: the prompt is \d+ tokens .*context window is \d+/,
    );
    await expect(engine.openItem({ id: "broken", image: Buffer.from("GIF89a broken"), question: "How many?" })).rejects.toThrow(
      ItemInputError,
    );
    await expect(engine.openItem({ id: "empty-q", image: images[0]!, question: " " })).rejects.toThrow(
      /item "empty-q": question: expected a non-empty string/,
    );
    const ctx = await open(engine, 0);
    await expect(
      engine.generate(ctx, [
        { id: "bad id!", prefix: "", stop: { kind: "end" }, maxTokens: 0, sampleKey: "k" } as GenerateRequest,
      ]),
    ).rejects.toThrow(/generate request bad id!: id: .*; maxTokens: /);
    engine.closeItem(ctx);
    await expect(engine.generate(ctx, answerRequests(0, 1))).rejects.toThrow(EngineRequestError);
  });
});
