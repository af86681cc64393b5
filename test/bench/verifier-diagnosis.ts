/**
 * `npm run verifier:diagnose -- SETDIR [LIMIT] [FLAGS]`: where stage-level search with the verifier
 * loses on the policy's own candidates. It runs stage:4:verifier on a scene set (`stagebeam
 * scenes`, whose items.jsonl holds each item's reference response) and, for every verifier step,
 * counts how many of the 4 candidates equal the reference stage text and whether the verifier
 * picked one that does. A stage is counted only where every stage accepted before it equals the
 * reference, since only there is the reference the right text. "Mixed" steps (some candidates
 * right, some wrong) are where the pick matters; "chance" is a random pick's rate on them.
 * FLAGS are a --compare row's (`resample2:CAPTION=1.0`, eval.ts), to measure candidates that
 * differ: per stage the distinct well-formed candidates a step, and overall how many of them the
 * policy's decoder tokens buy.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadLocalEngine, loadLocalVerifier } from "../../apps/cli/commands/local-engine.ts";
import { openItemExecutor } from "../../workers/engine/index.ts";
import { toItemId } from "../../shared/core/ids.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { paramsFor, settingsLabel } from "../../shared/core/search/settings.ts";
import { parseCompare } from "../../apps/cli/commands/eval.ts";
import { normalizeAnswer } from "../../shared/core/eval/stats.ts";
import type { SceneSetLine } from "../../shared/io/scene-files.ts";

const [dir, limit, flags] = process.argv.slice(2);
if (dir === undefined) throw new Error("usage: npm run verifier:diagnose -- SETDIR [LIMIT] [FLAGS]");
const items = (await readFile(join(dir, "items.jsonl"), "utf8"))
  .trim()
  .split("\n")
  .map((l) => JSON.parse(l) as SceneSetLine)
  .slice(0, limit === undefined ? undefined : Number(limit));
const SETTINGS = parseCompare(`stage:4:verifier${flags ? `:${flags}` : ""}`, { seed: 1 })[0]!;
const CONCURRENCY = 8;

const stageText = (response: string, tag: string) => new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(response)?.[1] ?? null;
const normalized = (s: string) =>
  s
    .replace(/<\/?[A-Z]+>/g, "")
    .replace(/\s+/g, " ")
    .trim();

interface StageTally {
  /** Steps whose accepted stages so far all equal the reference. */
  known: number;
  anyRight: number;
  allRight: number;
  mixed: number;
  pickedRightMixed: number;
  /** Sum over mixed steps of the share of right candidates: a random pick's expected hits. */
  chanceMixed: number;
  /** Every step of the stage: how many, and their distinct well-formed candidates in all. */
  steps: number;
  distinctWellFormed: number;
}
const tallies = new Map<string, StageTally>();
const tallyOf = (label: string) => {
  const t = tallies.get(label) ?? {
    known: 0,
    anyRight: 0,
    allRight: 0,
    mixed: 0,
    pickedRightMixed: 0,
    chanceMixed: 0,
    steps: 0,
    distinctWellFormed: 0,
  };
  tallies.set(label, t);
  return t;
};

const engine = await loadLocalEngine(undefined);
const verifier = await loadLocalVerifier(undefined, engine);
let next = 0;
let correct = 0;
const worker = async () => {
  for (let i = next++; i < items.length; i = next++) {
    const item = items[i]!;
    const id = toItemId(item.id);
    const image = await readFile(join(dir, item.image));
    const open = await openItemExecutor(engine, { id, image, question: item.question }, verifier);
    try {
      const result = await runSearch(paramsFor(id, SETTINGS), open);
      if (normalizeAnswer(result.answer) === normalizeAnswer(item.answer)) correct++;
      let prefixRight = true;
      for (const step of result.steps) {
        const reference = stageText(item.response, step.label);
        if (reference === null) continue;
        const right = step.candidates.map((c) => normalized(c.text) === normalized(reference));
        const all = tallyOf(step.label);
        all.steps++;
        all.distinctWellFormed += new Set(step.candidates.filter((c) => c.defect === null).map((c) => c.text)).size;
        if (step.label !== "SUMMARY" && prefixRight) {
          const t = tallyOf(step.label);
          const n = right.filter(Boolean).length;
          t.known++;
          if (n > 0) t.anyRight++;
          if (n === right.length) t.allRight++;
          if (n > 0 && n < right.length) {
            t.mixed++;
            if (right[step.winner]) t.pickedRightMixed++;
            t.chanceMixed += n / right.length;
          }
        }
        prefixRight &&= right[step.winner] === true;
      }
    } finally {
      open.close();
    }
  }
};
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
// The policy's decoder tokens alone: what sampling the candidates cost (the verifier has its own engine).
const policyTokens = engine.counters().decoderTokens;
await verifier.close();
await engine.close();

const pct = (a: number, b: number) => (b === 0 ? "—" : `${((100 * a) / b).toFixed(1)}%`);
console.log(`${items.length} items of ${dir}; ${settingsLabel(SETTINGS)}, seed ${SETTINGS.seed}`);
console.log("stage        known  any right  all right  mixed  verifier picks right (mixed)  chance (mixed)  distinct ok/step");
let distinct = 0;
for (const [label, t] of tallies) {
  distinct += t.distinctWellFormed;
  console.log(
    `${label.padEnd(12)} ${String(t.known).padStart(5)}  ${pct(t.anyRight, t.known).padStart(9)}  ${pct(t.allRight, t.known).padStart(9)}  ${String(t.mixed).padStart(5)}  ${pct(t.pickedRightMixed, t.mixed).padStart(28)}  ${pct(t.chanceMixed, t.mixed).padStart(14)}  ${(t.distinctWellFormed / t.steps).toFixed(2).padStart(16)}`,
  );
}
console.log(
  `accuracy ${pct(correct, items.length)}; policy decoder tokens/item ${(policyTokens / items.length).toFixed(0)}; distinct well-formed candidates (all stages) per 1000 policy decoder tokens ${((1000 * distinct) / policyTokens).toFixed(2)}`,
);
