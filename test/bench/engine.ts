/**
 * stagebeam vs the reference implementation's work pattern, side by side in one process on
 * the same items: stage-level beam search N=4 as stagebeam runs it (prefix cache, batched
 * candidates across items, token-level stops, score judge) and as the reference code does
 * (candidates one at a time, image and prompt re-encoded per candidate, whole-text stop check,
 * generative judge). Same model, same sampling streams.
 *
 *   npm run bench:engine -- [--items 30] [--beam 4] [--seed 1] [--concurrency 8] [--model DIR]
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { readEvalSet } from "../../shared/io/eval-set.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { Engine } from "../../workers/engine/index.ts";
import { evaluate, formatOutcomes, type EvalOutcome } from "../../apps/cli/commands/eval.ts";
import { searchSettings } from "../../apps/cli/commands/search-options.ts";
import { BUNDLED_MODEL, measureDecode } from "./decode.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: BUNDLED_MODEL },
    items: { type: "string", default: "30" },
    beam: { type: "string", default: "4" },
    seed: { type: "string", default: "1" },
    concurrency: { type: "string", default: "8" },
    "set-seed": { type: "string", default: "3000" },
  },
});

const dir = await mkdtemp(path.join(tmpdir(), "bench-engine-"));
await writeSceneSet(dir, { count: Number(values.items), seed: Number(values["set-seed"]) });
const { items } = await readEvalSet(dir);
const beam = Number(values.beam);
const seed = Number(values.seed);

async function run(label: string, reference: boolean, judge: "score" | "generate", concurrency: number) {
  const engine = await Engine.load(values.model, { reference });
  try {
    const outcome = await evaluate(engine, items, searchSettings({ strategy: "stage", beam, judge, seed }), concurrency);
    const c = engine.counters();
    return { label, outcome: { ...outcome, label }, counters: c };
  } finally {
    await engine.close();
  }
}

console.log(
  `stage-level beam search N=${beam} on ${items.length} generated items (set seed ${values["set-seed"]}), model ${values.model}\n`,
);
const ours = await run("stagebeam (score judge)", false, "score", Number(values.concurrency));
const oursGenerate = await run("stagebeam (generate judge)", false, "generate", Number(values.concurrency));
const reference = await run("reference pattern", true, "generate", 1);
const rows = [ours, oursGenerate, reference];

const line = (r: (typeof rows)[number]) => {
  const s = r.outcome.summary;
  return `${r.label.padEnd(28)} ${s.seconds.toFixed(1).padStart(7)} s  accuracy ${(100 * s.overall.accuracy).toFixed(1)}%  decoder tokens ${String(r.counters.decoderTokens).padStart(8)}  forward passes ${String(r.counters.forwardPasses).padStart(6)}`;
};
for (const r of rows) console.log(line(r));
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
console.log(
  `\nwall time, reference / stagebeam:            ${ratio(reference.outcome.summary.seconds, ours.outcome.summary.seconds)} (score judge)  ${ratio(reference.outcome.summary.seconds, oursGenerate.outcome.summary.seconds)} (generate judge)`,
);
console.log(
  `decoder tokens, reference / stagebeam:       ${ratio(reference.counters.decoderTokens, ours.counters.decoderTokens)} (score judge)  ${ratio(reference.counters.decoderTokens, oursGenerate.counters.decoderTokens)} (generate judge)`,
);
const sameAnswers = (a: EvalOutcome, b: EvalOutcome) => a.summary.overall.correct === b.summary.overall.correct;
console.log(`accuracy equal, stagebeam (generate) vs reference: ${sameAnswers(oursGenerate.outcome, reference.outcome)}`);

const b1 = await measureDecode(values.model, "batch 1", { maxBatch: 1 });
const b8 = await measureDecode(values.model, "batch 8", { maxBatch: 8 });
console.log(
  `decode tokens/s: batch 1 ${b1.tokensPerSecond.toFixed(0)}, batch 8 ${b8.tokensPerSecond.toFixed(0)} (${ratio(b8.tokensPerSecond, b1.tokensPerSecond)}); same texts: ${b1.texts.every((t, i) => t === b8.texts[i])}`,
);
console.log(`\n${formatOutcomes(rows.map((r) => r.outcome))}`);
