/**
 * Decode throughput at several batch sizes, measured side by side in one run on one model.
 *
 *   npx tsx workers/engine/bench-decode.ts [--model DIR] [--tokens 128] [--candidates 8] [--batches 1,8] [--reference]
 *
 * For each batch size a fresh engine (same model, same threads) generates the same candidates
 * (same sample keys, stop only at end of sequence) of one item; tokens/s counts sampled tokens
 * over the wall time of `generate` (the prompt is encoded at openItem, outside the timing).
 */
import { parseArgs } from "node:util";
import { generateItem } from "../../shared/scenes/items.ts";
import { renderScenePng } from "../../shared/scenes/render.ts";
import type { GenerateRequest } from "../../shared/search/types.ts";
import { resolveDevModel } from "./dev-model.ts";
import { Engine, type EngineOptions } from "./engine.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    tokens: { type: "string", default: "128" },
    candidates: { type: "string", default: "8" },
    batches: { type: "string", default: "1,8" },
    repeats: { type: "string", default: "3" },
    threads: { type: "string" },
    reference: { type: "boolean", default: false },
    untrained: { type: "boolean", default: true },
  },
});

const dev = values.model === undefined ? await resolveDevModel({ preferUntrained: values.untrained }) : null;
const dir = values.model ?? dev?.dir;
if (dir === undefined) throw new Error("no model folder found; pass --model DIR");
const maxTokens = Number(values.tokens);
const candidates = Number(values.candidates);
const repeats = Number(values.repeats);
const item = generateItem(2000, 0);
const image = await renderScenePng(item.scene);
const requests: GenerateRequest[] = Array.from({ length: candidates }, (_, i) => ({
  id: `${item.id}:answer:c${i}`,
  prefix: "",
  stop: { kind: "end" },
  maxTokens,
  sampleKey: `7/${item.id}/answer/c${i}`,
}));

async function measure(label: string, options: EngineOptions): Promise<{ tokensPerSecond: number; texts: string[] }> {
  const engine = await Engine.load(dir!, { ...options, ...(values.threads ? { intraOpThreads: Number(values.threads) } : {}) });
  const ctx = await engine.openItem({ id: item.id, image, question: item.question });
  await engine.generate(ctx, requests.slice(0, 1).map((r) => ({ ...r, maxTokens: 8 }))); // warm-up
  let best = 0;
  let texts: string[] = [];
  for (let r = 0; r < repeats; r++) {
    engine.resetCounters();
    const t0 = performance.now();
    const results = await engine.generate(ctx, requests);
    const seconds = (performance.now() - t0) / 1000;
    const c = engine.counters();
    best = Math.max(best, c.generatedTokens / seconds);
    texts = results.map((x) => x.text);
    if (r === repeats - 1) {
      console.log(
        `${label.padEnd(22)} ${(c.generatedTokens / seconds).toFixed(0).padStart(7)} tok/s (best ${best.toFixed(0)})  ` +
          `tokens ${c.generatedTokens}  decoder calls ${c.decoderCalls}  mean batch ${(c.decodeRows / Math.max(1, c.decodeSteps)).toFixed(2)}  ${seconds.toFixed(3)} s`,
      );
    }
  }
  engine.closeItem(ctx);
  await engine.close();
  return { tokensPerSecond: best, texts };
}

console.log(`model ${dev?.source ?? dir}; ${candidates} candidates × up to ${maxTokens} tokens; best of ${repeats}`);
const runs: { label: string; tps: number; texts: string[] }[] = [];
for (const b of values.batches.split(",").map(Number)) {
  const r = await measure(`batch ${b}`, { maxBatch: b });
  runs.push({ label: `batch ${b}`, tps: r.tokensPerSecond, texts: r.texts });
}
if (values.reference) {
  const r = await measure("reference pattern", { reference: true });
  runs.push({ label: "reference", tps: r.tokensPerSecond, texts: r.texts });
}
const base = runs[0]!;
for (const r of runs.slice(1)) {
  const same = r.texts.every((t, i) => t === base.texts[i]);
  console.log(`${r.label} / ${base.label}: ×${(r.tps / base.tps).toFixed(2)} tokens/s; same texts: ${same}`);
}
await dev?.cleanup();
