/**
 * stagebeam vs the reference implementation's work pattern, side by side in one run on the
 * same items: stage-level beam search N=4 as stagebeam runs it (prefix cache, batched
 * candidates across items, token-level stops, score judge) and as the reference code does
 * (candidates one at a time, image and prompt re-encoded per candidate, whole-text stop check,
 * generative judge). Same model, same sampling streams. A fourth row picks the candidates with
 * the process verifier instead (judge mode verifier: one batched scoring pass per stage; the
 * bundled verifier, --verifier DIR, else the policy as its own verifier). stagebeam's score-judge
 * and verifier rows judge equal texts once (its default) and run again without merging, side by
 * side; its generative-judge row does not merge, as the reference, whose answers it must give. Each row runs in a process of its own (engine-row.ts), so each gets its own peak
 * RSS.
 *
 *   npm run bench:engine -- [--items 30] [--beam 4] [--seed 1] [--concurrency 8] [--model DIR] [--verifier DIR]
 *                           [--max-stage-tokens L] [--judge-max-tokens J] [--decode-tokens 128] [--decode-repeats 3]
 *                           [--rows score,generate,reference,verifier,decode]
 *
 * `--rows` runs only some of the rows (score is always run): on a slow machine or a large model,
 * `--rows score,reference` is the side-by-side comparison the target is about.
 *
 * With the benchmark model (`npm run bench:model`, which never samples end of sequence or a
 * stage end tag) and --max-stage-tokens L, every candidate runs exactly L tokens and every
 * search walks all four stages; the report checks that from the token counts. Its generated
 * judge answers run to --judge-max-tokens (the engine's judgeMaxTokens, default 32), where a
 * real judge's "I choose response 1" ends after a handful.
 */
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { STAGES } from "../../shared/core/protocol/stages.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { formatOutcomes } from "../../apps/cli/commands/eval.ts";
import { BUNDLED_VERIFIER_DIR } from "../../shared/io/config.ts";
import { selfVerifierFolder } from "../support/self-verifier.ts";
import { BUNDLED_MODEL } from "./decode.ts";
import { measureInChild, type ModelShape, type SearchMeasurement } from "./engine-row.ts";
import { PHASES } from "./phases.ts";

const TARGET_WALL_RATIO = 5;
const TARGET_BATCH_RATIO = 4;

const { values } = parseArgs({
  options: {
    model: { type: "string", default: BUNDLED_MODEL },
    verifier: { type: "string" },
    items: { type: "string", default: "30" },
    beam: { type: "string", default: "4" },
    seed: { type: "string", default: "1" },
    concurrency: { type: "string", default: "8" },
    "set-seed": { type: "string", default: "3000" },
    "max-stage-tokens": { type: "string" },
    "judge-max-tokens": { type: "string" },
    "decode-tokens": { type: "string", default: "128" },
    "decode-repeats": { type: "string", default: "3" },
    rows: { type: "string", default: "score,generate,reference,verifier,no-merge,decode" },
  },
});
const ROWS = ["score", "generate", "reference", "verifier", "no-merge", "decode"];
const wanted = new Set(values.rows.split(","));
const unknownRow = [...wanted].find((r) => !ROWS.includes(r));
if (unknownRow !== undefined) throw new Error(`--rows: unknown row ${unknownRow}; expected some of ${ROWS.join(", ")}`);

const model = path.resolve(values.model);
const setDir = await mkdtemp(path.join(tmpdir(), "bench-engine-"));
const itemCount = Number(values.items);
await writeSceneSet(setDir, { count: itemCount, seed: Number(values["set-seed"]) });
const beam = Number(values.beam);
const seed = Number(values.seed);
const optionalNumber = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const maxStageTokens = optionalNumber(values["max-stage-tokens"]);
const judgeMaxTokens = optionalNumber(values["judge-max-tokens"]);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(", ");

const cap =
  (maxStageTokens === undefined ? "" : `, ${maxStageTokens} tokens a stage candidate`) +
  (judgeMaxTokens === undefined ? "" : `, ${judgeMaxTokens} a generated judge answer`);
console.log(
  `stage-level beam search N=${beam} on ${itemCount} generated items (set seed ${values["set-seed"]})${cap}, model ${model}`,
);
console.log(`load average at start: ${load()}\n`);

const bundledVerifier = existsSync(BUNDLED_VERIFIER_DIR) && model === path.resolve(BUNDLED_MODEL);
const verifierDir = !wanted.has("verifier")
  ? ""
  : values.verifier !== undefined
    ? path.resolve(values.verifier)
    : bundledVerifier
      ? BUNDLED_VERIFIER_DIR
      : await selfVerifierFolder(setDir, undefined, model);
const ownVerifier = values.verifier === undefined && !bundledVerifier;
if (wanted.has("verifier")) console.log(`verifier: ${verifierDir}${ownVerifier ? " (the policy as its own verifier)" : ""}`);

/** Each search row's 1-minute load average at its start and end: the rows run one after another on a shared machine. */
const rowLoad = new Map<SearchMeasurement, [number, number]>();
const search = async (
  label: string,
  reference: boolean,
  judge: "score" | "generate" | "verifier",
  concurrency: number,
  merge = !reference,
) => {
  const start = loadavg()[0]!;
  const m = await measureInChild({
    kind: "search",
    label,
    model,
    setDir,
    reference,
    judge,
    concurrency,
    beam,
    seed,
    merge,
    ...(maxStageTokens !== undefined ? { maxStageTokens } : {}),
    ...(judgeMaxTokens !== undefined ? { judgeMaxTokens } : {}),
    ...(judge === "verifier" ? { verifier: verifierDir } : {}),
  });
  rowLoad.set(m, [start, loadavg()[0]!]);
  return m;
};
const ours = await search("stagebeam (score judge)", false, "score", Number(values.concurrency));
// Without merging, as the reference judges: a sampled verdict per pair, so the answers can be compared.
const oursGenerate = wanted.has("generate")
  ? await search("stagebeam (generate judge, no merge)", false, "generate", Number(values.concurrency), false)
  : null;
const reference = wanted.has("reference") ? await search("reference pattern", true, "generate", 1) : null;
const oursVerifier = wanted.has("verifier")
  ? await search("stagebeam (verifier)", false, "verifier", Number(values.concurrency))
  : null;
const oursNoMerge = wanted.has("no-merge")
  ? await search("stagebeam (score judge, no merge)", false, "score", Number(values.concurrency), false)
  : null;
const verifierNoMerge =
  wanted.has("no-merge") && oursVerifier !== null
    ? await search("stagebeam (verifier, no merge)", false, "verifier", Number(values.concurrency), false)
    : null;
const rows = [ours, oursGenerate, reference, oursVerifier, oursNoMerge, verifierNoMerge].filter(
  (r): r is SearchMeasurement => r !== null,
);

function describe(s: ModelShape): string {
  const embeddings = s.embeddingTable ? "a table in memory" : "embed_tokens.onnx per call (table over the size limit)";
  return `model: ${s.layers} layers, width ${s.hidden}, ${s.kvHeads} KV heads × ${s.headDim}, logits over ${s.vocab} ids (the tokenizer's ${s.tokenizerVocab} sampled), ${s.imageTokens ?? "per-image"} image tokens; KV ${s.kvType} (${(s.kvBytesPerToken / 1024).toFixed(0)} KiB a position), embeddings ${s.embedType}, ${embeddings}`;
}
console.log(describe(ours.shape));

const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(0)}%`;
const cells = (r: SearchMeasurement) => {
  const wall = r.outcome.summary.seconds;
  const sessions = PHASES.reduce((sum, p) => sum + r.phases[p], 0);
  return [
    r.label,
    wall.toFixed(1),
    r.cpuSeconds.toFixed(1),
    String(r.counters.decoderTokens),
    String(r.counters.forwardPasses),
    ...PHASES.map((p) => pct(r.phases[p], wall)),
    pct(wall - sessions, wall),
    r.peakRssMB.toFixed(0),
    rowLoad
      .get(r)!
      .map((x) => x.toFixed(1))
      .join("→"),
  ];
};
const header = ["", "wall s", "cpu s", "decoder tok", "passes", ...PHASES, "other", "peak RSS MB", "load"];
const table = [header, ...rows.map(cells)];
const widths = header.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
for (const r of table)
  console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
console.log(
  "(shares of wall time; other = sampling, stop checks, KV assembly, tokenizing, judge bookkeeping; cpu s = the row process's user + system CPU; load = 1-minute load average at the row's start → end)",
);

const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
const verdict = (value: number, target: number) =>
  `${value.toFixed(2)}× (target ≥ ${target}×: ${value >= target ? "met" : "not met"})`;
const targets: string[] = [];
if (reference !== null) {
  const versus = (of: (r: SearchMeasurement) => number) =>
    `${ratio(of(reference), of(ours))} (score judge)` +
    (oursGenerate === null ? "" : `  ${ratio(of(reference), of(oursGenerate))} (generate judge)`);
  console.log(`\nwall time, reference / stagebeam:            ${versus((r) => r.outcome.summary.seconds)}`);
  console.log(`CPU time, reference / stagebeam:             ${versus((r) => r.cpuSeconds)}`);
  console.log(`decoder tokens, reference / stagebeam:       ${versus((r) => r.counters.decoderTokens)}`);
  if (oursGenerate !== null)
    console.log(
      `accuracy equal, stagebeam (generate) vs reference: ${oursGenerate.outcome.summary.overall.correct === reference.outcome.summary.overall.correct}`,
    );
  targets.push(
    `wall time reference / stagebeam (score judge) ${verdict(reference.outcome.summary.seconds / ours.outcome.summary.seconds, TARGET_WALL_RATIO)}`,
  );
}
const sameAnswers = (a: SearchMeasurement, b: SearchMeasurement) =>
  a.outcome.items.every((row, i) => row.id === b.outcome.items[i]?.id && row.answer === b.outcome.items[i]?.answer);
if (oursNoMerge !== null) {
  const verifierPart =
    oursVerifier === null || verifierNoMerge === null
      ? ""
      : `  ${ratio(verifierNoMerge.counters.decoderTokens, oursVerifier.counters.decoderTokens)} (verifier)`;
  const verifierSame =
    oursVerifier === null || verifierNoMerge === null ? "" : `  ${sameAnswers(oursVerifier, verifierNoMerge)} (verifier)`;
  console.log(
    `decoder tokens, no merge / merge:            ${ratio(oursNoMerge.counters.decoderTokens, ours.counters.decoderTokens)} (score judge)${verifierPart}; same answers: ${sameAnswers(ours, oursNoMerge)} (score judge)${verifierSame}`,
  );
}
if (maxStageTokens !== undefined) {
  const expected = itemCount * STAGES.length * beam * maxStageTokens;
  const fixed = rows.every((r) => r.counters.generatedTokens === expected && r.outcome.failures.length === 0);
  console.log(
    `fixed lengths: every row sampled ${rows.map((r) => r.counters.generatedTokens).join("/")} candidate tokens; ${itemCount} items × ${STAGES.length} stages × ${beam} × ${maxStageTokens} = ${expected}: ${fixed} (judge tokens ${rows.map((r) => r.counters.judgeTokens).join("/")})`,
  );
}

if (wanted.has("decode")) {
  const decodeShape = { candidates: 8, maxTokens: Number(values["decode-tokens"]), repeats: Number(values["decode-repeats"]) };
  const decode = (maxBatch: number) =>
    measureInChild({ kind: "decode", label: `batch ${maxBatch}`, model, maxBatch, ...decodeShape });
  const b1 = await decode(1);
  const b8 = await decode(8);
  console.log(
    `decode tokens/s: batch 1 ${b1.tokensPerSecond.toFixed(1)}, batch 8 ${b8.tokensPerSecond.toFixed(1)} (${ratio(b8.tokensPerSecond, b1.tokensPerSecond)}); same texts: ${b1.texts.every((t, i) => t === b8.texts[i])}; peak RSS ${b1.peakRssMB.toFixed(0)} / ${b8.peakRssMB.toFixed(0)} MB`,
  );
  targets.push(`decode batch 8 / batch 1 ${verdict(b8.tokensPerSecond / b1.tokensPerSecond, TARGET_BATCH_RATIO)}`);
}
if (targets.length > 0) console.log(`targets: ${targets.join("; ")}`);
console.log(`load average at end: ${load()}`);
console.log(`\n${formatOutcomes(rows.map((r) => r.outcome))}`);
