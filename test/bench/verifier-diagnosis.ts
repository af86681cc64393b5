/**
 * `npm run verifier:diagnose -- SETDIR [LIMIT]`: where stage-level search with the verifier
 * loses on the policy's own candidates. It runs stage:4:verifier on a scene set (`stagebeam
 * scenes`, whose items.jsonl holds each item's reference response) and, for every verifier step,
 * counts how many of the 4 candidates equal the reference stage text and whether the verifier
 * picked one that does. A stage is counted only where every stage accepted before it equals the
 * reference, since only there is the reference the right text. "Mixed" steps (some candidates
 * right, some wrong) are where the pick matters; "chance" is a random pick's rate on them.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadLocalEngine, loadLocalVerifier } from "../../apps/cli/commands/local-engine.ts";
import { openItemExecutor } from "../../workers/engine/index.ts";
import { toItemId } from "../../shared/core/ids.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import { paramsFor, type SearchSettings } from "../../shared/core/search/settings.ts";
import type { SceneSetLine } from "../../shared/io/scene-files.ts";

const [dir, limit] = process.argv.slice(2);
if (dir === undefined) throw new Error("usage: npm run verifier:diagnose -- SETDIR [LIMIT]");
const items = (await readFile(join(dir, "items.jsonl"), "utf8"))
  .trim()
  .split("\n")
  .map((l) => JSON.parse(l) as SceneSetLine)
  .slice(0, limit === undefined ? undefined : Number(limit));
const SETTINGS: SearchSettings = {
  strategy: "stage",
  beam: 4,
  seed: 1,
  judgeMode: "verifier",
  maxStageTokens: 512,
  maxSentenceSteps: 40,
};
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
}
const tallies = new Map<string, StageTally>();
const tallyOf = (label: string) => {
  const t = tallies.get(label) ?? { known: 0, anyRight: 0, allRight: 0, mixed: 0, pickedRightMixed: 0, chanceMixed: 0 };
  tallies.set(label, t);
  return t;
};

const engine = await loadLocalEngine(undefined);
const verifier = await loadLocalVerifier(undefined, engine);
let next = 0;
const worker = async () => {
  for (let i = next++; i < items.length; i = next++) {
    const item = items[i]!;
    const id = toItemId(item.id);
    const image = await readFile(join(dir, item.image));
    const open = await openItemExecutor(engine, { id, image, question: item.question }, "verifier", verifier);
    try {
      const result = await runSearch(paramsFor(id, SETTINGS), open);
      let prefixRight = true;
      for (const step of result.steps) {
        const reference = stageText(item.response, step.label);
        if (reference === null) continue;
        const right = step.candidates.map((c) => normalized(c.text) === normalized(reference));
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
await verifier.close();
await engine.close();

const pct = (a: number, b: number) => (b === 0 ? "—" : `${((100 * a) / b).toFixed(1)}%`);
console.log(`${items.length} items of ${dir}; stage N=4 with the verifier, seed ${SETTINGS.seed}`);
console.log("stage        known  any right  all right  mixed  verifier picks right (mixed)  chance (mixed)");
for (const [label, t] of tallies) {
  console.log(
    `${label.padEnd(12)} ${String(t.known).padStart(5)}  ${pct(t.anyRight, t.known).padStart(9)}  ${pct(t.allRight, t.known).padStart(9)}  ${String(t.mixed).padStart(5)}  ${pct(t.pickedRightMixed, t.mixed).padStart(28)}  ${pct(t.chanceMixed, t.mixed).padStart(14)}`,
  );
}
