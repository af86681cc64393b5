/**
 * Decode throughput at several batch sizes, measured side by side in one run on one model.
 *
 *   npm run bench:decode -- [--model DIR] [--tokens 128] [--candidates 8] [--batches 1,8] [--reference]
 *
 * For each batch size a fresh engine (same model, same threads) generates the same candidates
 * (same sample keys, stop only at end of sequence) of one item; tokens/s counts sampled tokens
 * over the wall time of `generate` (the prompt is encoded at openItem, outside the timing).
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { generateItem } from "../../shared/core/scenes/items.ts";
import { renderScenePng } from "../../shared/io/scene-files.ts";
import type { GenerateRequest } from "../../shared/core/search/types.ts";
import { Engine, type EngineOptions } from "../../workers/engine/index.ts";

export const BUNDLED_MODEL = path.resolve(import.meta.dirname, "../../models/stagebeam-tiny");

export interface DecodeRun {
  label: string;
  tokensPerSecond: number;
  best: number;
  texts: string[];
  meanBatch: number;
}

export async function measureDecode(
  dir: string,
  label: string,
  options: EngineOptions,
  { candidates = 8, maxTokens = 128, repeats = 3 } = {},
): Promise<DecodeRun> {
  const item = generateItem(2000, 0);
  const image = await renderScenePng(item.scene);
  const requests: GenerateRequest[] = Array.from({ length: candidates }, (_, i) => ({
    id: `${item.id}:answer:c${i}`,
    prefix: "",
    stop: { kind: "end" },
    maxTokens,
    sampleKey: `7/${item.id}/answer/c${i}`,
  }));
  const engine = await Engine.load(dir, options);
  const ctx = await engine.openItem({ id: item.id, image, question: item.question });
  await engine.generate(
    ctx,
    requests.slice(0, 1).map((r) => ({ ...r, maxTokens: 8 })),
  ); // warm-up
  let best = 0;
  let last = { tokensPerSecond: 0, texts: [] as string[], meanBatch: 0 };
  for (let r = 0; r < repeats; r++) {
    engine.resetCounters();
    const t0 = performance.now();
    const results = await engine.generate(ctx, requests);
    const seconds = (performance.now() - t0) / 1000;
    const c = engine.counters();
    best = Math.max(best, c.generatedTokens / seconds);
    last = {
      tokensPerSecond: c.generatedTokens / seconds,
      texts: results.map((x) => x.text),
      meanBatch: c.decodeRows / Math.max(1, c.decodeSteps),
    };
  }
  engine.closeItem(ctx);
  await engine.close();
  return { label, best, ...last };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string", default: BUNDLED_MODEL },
      tokens: { type: "string", default: "128" },
      candidates: { type: "string", default: "8" },
      batches: { type: "string", default: "1,8" },
      repeats: { type: "string", default: "3" },
      reference: { type: "boolean", default: false },
    },
  });
  const shape = { candidates: Number(values.candidates), maxTokens: Number(values.tokens), repeats: Number(values.repeats) };
  console.log(
    `model ${values.model}; ${shape.candidates} candidates × up to ${shape.maxTokens} tokens; last of ${shape.repeats} (best in brackets)`,
  );
  const runs: DecodeRun[] = [];
  for (const b of values.batches.split(",").map(Number))
    runs.push(await measureDecode(values.model, `batch ${b}`, { maxBatch: b }, shape));
  if (values.reference) runs.push(await measureDecode(values.model, "reference pattern", { reference: true }, shape));
  for (const r of runs)
    console.log(
      `${r.label.padEnd(18)} ${r.tokensPerSecond.toFixed(0).padStart(6)} tok/s (best ${r.best.toFixed(0)})  mean batch ${r.meanBatch.toFixed(2)}`,
    );
  const base = runs[0]!;
  for (const r of runs.slice(1)) {
    const same = r.texts.every((t, i) => t === base.texts[i]);
    console.log(
      `${r.label} / ${base.label}: ×${(r.tokensPerSecond / base.tokensPerSecond).toFixed(2)} tokens/s; same texts: ${same}`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
