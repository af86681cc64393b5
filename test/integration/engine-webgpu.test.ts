/**
 * The engine on the WebGPU execution provider with its KV on the device (kv-device.ts), on the
 * machine's Vulkan device (Mesa's software driver on a CPU-only machine): the same tokens, the
 * same search trace and the same verdicts as the CPU provider, and every device tensor released.
 * Software Vulkan is slow, so the work here is small.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateItem } from "../../shared/core/scenes/items.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { paramsFor, parseSearchSettings } from "../../shared/core/search/settings.ts";
import type { GenerateRequest, GenerateResult, JudgeRequest } from "../../shared/core/search/types.ts";
import { renderScenePng } from "../../shared/io/scene-files.ts";
import { Engine } from "../../workers/engine/engine.ts";
import { closeTrace } from "../support/approx.ts";
import { expectWebgpu, webgpuEnv } from "../support/webgpu.ts";
import { makeFixtures, type Fixtures } from "../conformance/fixtures.ts";

const MODEL = path.resolve(import.meta.dirname, "../../models/stagebeam-tiny");
const items = [generateItem(2100, 0), generateItem(2100, 1)];
const images = await Promise.all(items.map((it) => renderScenePng(it.scene)));
const open = (engine: Engine, i: number) =>
  engine.openItem({ id: items[i]!.id, image: images[i]!, question: items[i]!.question });

let cpu: Engine;
let gpu: Engine;
/** Device KV bytes and stores after each of the WebGPU engine's decode steps. */
const steps: { bytes: number; stores: number; rows: number }[] = [];

beforeAll(async () => {
  webgpuEnv();
  cpu = await Engine.load(MODEL, { maxBatch: 8 });
  gpu = await Engine.load(MODEL, {
    executionProviders: ["webgpu"],
    maxBatch: 8,
    observer: {
      decodeStep: (rows) => {
        const m = gpu.kvMemory();
        steps.push({ bytes: m.bytes, stores: m.stores, rows });
      },
    },
  });
  expectWebgpu(gpu.info);
});
afterAll(async () => {
  await Promise.all([cpu?.close(), gpu?.close()]);
});

const greedy = (id: string, stop: GenerateRequest["stop"], maxTokens: number, prefix = ""): GenerateRequest => ({
  id,
  prefix,
  stop,
  maxTokens,
  sampleKey: id,
  greedy: true,
  logProb: true,
});

/** Two items at once: greedy candidates batched across them, an accepted prefix continued, a judge call. */
async function work(engine: Engine): Promise<{ gen: GenerateResult[][]; verdicts: unknown }> {
  const [a, b] = await Promise.all([open(engine, 0), open(engine, 1)]);
  const [first, answers] = await Promise.all([
    engine.generate(a, [greedy("a:SUMMARY", { kind: "stage", stage: "SUMMARY" }, 24)]),
    engine.generate(b, [greedy("b:answer", { kind: "end" }, 30)]),
  ]);
  const caption = await engine.generate(a, [greedy("a:CAPTION", { kind: "stage", stage: "CAPTION" }, 16, first[0]!.text)]);
  const judge: JudgeRequest[] = [
    {
      id: "j1",
      kind: "compare",
      template: "SUMMARY",
      hint: "",
      first: first[0]!.text,
      second: "<SUMMARY>I will guess.</SUMMARY>",
    },
    {
      id: "j2",
      kind: "compare",
      template: "SUMMARY",
      hint: "",
      first: "<SUMMARY>I will guess.</SUMMARY>",
      second: first[0]!.text,
    },
  ];
  const verdicts = await engine.judge(a, judge);
  engine.closeItem(a);
  engine.closeItem(b);
  return { gen: [first, answers, caption], verdicts };
}

describe("the engine on WebGPU with device KV", () => {
  it("decodes greedily token for token as the CPU provider does, and frees every device tensor", async () => {
    const want = await work(cpu);
    const got = await work(gpu);
    expect(got.gen.flat().map((r) => r.text)).toEqual(want.gen.flat().map((r) => r.text));
    expect(got).toEqual(closeTrace(want));
    expect(got.gen.flat().every((r) => r.tokens > 3)).toBe(true);
    expect(gpu.kvMemory()).toEqual({ place: "device", bytes: 0, stores: 0 });
  });

  it("runs a stage N=4 search with the CPU provider's trace", async () => {
    const settings = parseSearchSettings({ strategy: "stage", beam: 4, seed: 3, judgeMode: "score", maxStageTokens: 12 });
    const search = async (engine: Engine) => {
      const ctx = await open(engine, 1);
      try {
        return await runSearch(paramsFor(ctx.id, settings), {
          generate: (r) => engine.generate(ctx, r),
          judge: (r) => engine.judge(ctx, r),
        });
      } finally {
        engine.closeItem(ctx);
      }
    };
    const want = await search(cpu);
    const got = await search(gpu);
    expect(got).toEqual(closeTrace(want));
    expect(got.counts.generatedTokens).toBeGreaterThan(30);
  });

  it("keeps device memory flat over a long decode and returns it to where it started", async () => {
    const start = gpu.kvMemory();
    steps.length = 0;
    const ctx = await open(gpu, 0);
    const sampled: GenerateRequest[] = [0, 1, 2, 3].map((c) => ({
      id: `long${c}`,
      prefix: "",
      stop: { kind: "end" },
      maxTokens: 120,
      sampleKey: `long/${c}`,
    }));
    const out = await gpu.generate(ctx, sampled);
    const longest = Math.max(...out.map((r) => r.tokens));
    expect(longest).toBeGreaterThan(40);
    // Each step frees the last one's cache: the stores held (the prompt's entry, the last and
    // the new step cache) do not pile up with the steps.
    expect(steps.length).toBeGreaterThan(40);
    expect(Math.max(...steps.map((s) => s.stores))).toBeLessThanOrEqual(3);
    // Bytes held are the prompt's cache plus two step caches of the batch (past and present), nothing more.
    const perPosition = gpu.info.kvBytesPerToken;
    const prompt = ctx.promptIds.length * perPosition;
    for (const s of steps) expect(s.bytes).toBeLessThanOrEqual(prompt + 2 * 4 * (ctx.promptIds.length + 121) * perPosition);
    gpu.closeItem(ctx);
    expect(gpu.kvMemory()).toEqual(start);
  });
});

describe("a published-layout fixture on WebGPU with device KV", () => {
  let fixtures: Fixtures;
  beforeAll(async () => {
    fixtures = await makeFixtures();
  });
  afterAll(() => {
    fixtures?.remove();
  });

  it("decodes the llava fixture greedily as the CPU provider does", async () => {
    const dir = fixtures.dir("llava");
    const run = async (engine: Engine) => {
      try {
        const ctx = await engine.openItem({ id: "fixture", image: fixtures.images.wide, question: "How many red objects?" });
        const [r] = await engine.generate(ctx, [greedy("g", { kind: "end" }, 16)]);
        engine.closeItem(ctx);
        expect(engine.kvMemory().stores).toBe(0);
        return r!;
      } finally {
        await engine.close();
      }
    };
    const want = await run(await Engine.load(dir));
    const onGpu = await Engine.load(dir, { executionProviders: ["webgpu"] });
    expectWebgpu(onGpu.info);
    const got = await run(onGpu);
    expect(got.tokens).toBeGreaterThan(3);
    expect(got).toEqual(closeTrace(want));
  });
});
