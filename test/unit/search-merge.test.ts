import { describe, expect, it } from "vitest";
import { closeTag, openTag, STAGES, type Stage } from "../../shared/core/protocol/stages.ts";
import {
  runSearch,
  type GenerateRequest,
  type GenerateResult,
  type JudgeRequest,
  type JudgeResult,
  type SearchExecutor,
  type SearchParamsInput,
  type SearchResult,
  type VerifyRequest,
  type VerifyResult,
} from "../../shared/core/search/index.ts";

// Scripted candidates: candidate i of every step writes text group PATTERN[i % 4], whose quality
// decides a comparison (ties to the first, as the score judge's) and a verifier score. Each
// group has its own quality, so the judge is consistent whichever way round a pair meets.

const PATTERNS = { "all equal": [0, 0, 0, 0], "two groups": [0, 1, 0, 1], "all different": [0, 1, 2, 3] } as const;
type Pattern = keyof typeof PATTERNS;
const QUALITY = [3, 7, 1, 5];
const ANSWERS = ["2", "3", "4", "5"];

const candidateOf = (id: string) => Number(/:c(\d+)$/.exec(id)![1]);
const stepOf = (id: string) => id.split(":")[1]!;
const quality = (text: string) => Number(/q(\d)/.exec(text)?.[1] ?? 0);

const SENTENCES = ["<SUMMARY>I look.</SUMMARY>", "<CAPTION>Cubes.</CAPTION>", "<REASONING>So.</REASONING>", "<CONCLUSION>"];

function textOf(req: GenerateRequest, group: number): string {
  const tag = `g${group} q${QUALITY[group]}`;
  switch (req.stop.kind) {
    case "stage":
      return `${openTag(req.stop.stage)}${req.stop.stage} ${tag}${closeTag(req.stop.stage)}`;
    case "end":
      return STAGES.map((s) => `${openTag(s)}${s === "CONCLUSION" ? ANSWERS[group] : `${s} ${tag}`}${closeTag(s)}`).join("");
    case "sentence": {
      const k = Number(/^s(\d+)$/.exec(stepOf(req.id))![1]) - 1;
      return k < 3 ? SENTENCES[k]!.replace(".", ` ${tag}.`) : `<CONCLUSION>${ANSWERS[group]} ${tag}</CONCLUSION>`;
    }
  }
}

interface Run {
  result: SearchResult;
  /** Judge and verifier requests, by step key. */
  asked: Map<string, (JudgeRequest | VerifyRequest)[]>;
}

async function run(params: SearchParamsInput, pattern: Pattern): Promise<Run> {
  const asked = new Map<string, (JudgeRequest | VerifyRequest)[]>();
  const note = (r: JudgeRequest | VerifyRequest) => asked.set(stepOf(r.id), [...(asked.get(stepOf(r.id)) ?? []), r]);
  const executor: SearchExecutor = {
    generate: async (requests) =>
      requests.map((r): GenerateResult => {
        const text = textOf(r, PATTERNS[pattern][candidateOf(r.id) % 4]!);
        return { id: r.id, text, tokens: text.length, truncated: false, finished: false, logProb: -1 };
      }),
    judge: async (requests) =>
      requests.map((r): JudgeResult => {
        note(r);
        if (r.kind === "check") return { id: r.id, verdict: quality(r.candidate) >= 3 ? "correct" : "incorrect" };
        return { id: r.id, verdict: quality(r.second) > quality(r.first) ? 2 : 1 };
      }),
    verify: async (requests) =>
      requests.map((r): VerifyResult => {
        note(r);
        const score = quality(r.candidate) / 10;
        return { id: r.id, score, steps: [score] };
      }),
  };
  return { result: await runSearch(params, executor), asked };
}

const textsOf = (r: JudgeRequest | VerifyRequest): string[] =>
  "kind" in r ? (r.kind === "compare" ? [r.first, r.second] : [r.candidate]) : [r.prefix + r.candidate];

const CASES: { name: string; params: Omit<SearchParamsInput, "itemId" | "seed"> }[] = [
  { name: "stage, judge", params: { strategy: "stage", beam: 4 } },
  { name: "stage, verifier", params: { strategy: "stage", beam: 4, verifier: true } },
  { name: "best-of-n, judge", params: { strategy: "best-of-n", beam: 4 } },
  { name: "best-of-n, verifier", params: { strategy: "best-of-n", beam: 4, verifier: true } },
  { name: "sentence, judge", params: { strategy: "sentence", beam: 4 } },
  { name: "sentence, verifier", params: { strategy: "sentence", beam: 4, verifier: true } },
  { name: "vote", params: { strategy: "vote", beam: 4 } },
  { name: "vote-weighted", params: { strategy: "vote-weighted", beam: 4 } },
  { name: "swires", params: { strategy: "swires", beam: 1 } },
];

describe("equal texts judged once", () => {
  for (const { name, params } of CASES) {
    for (const pattern of Object.keys(PATTERNS) as Pattern[]) {
      it(`${name}, ${pattern}: the same answer as without merging, each distinct text judged once`, async () => {
        const merged = await run({ itemId: "m", seed: 1, ...params }, pattern);
        const plain = await run({ itemId: "m", seed: 1, ...params, merge: false }, pattern);
        expect(merged.result.text).toBe(plain.result.text);
        expect(merged.result.steps.map((s) => s.winner)).toEqual(plain.result.steps.map((s) => s.winner));
        expect(merged.result.steps.map((s) => s.decision)).toEqual(plain.result.steps.map((s) => s.decision));

        const groups = new Set(PATTERNS[pattern]).size;
        for (const step of merged.result.steps) {
          // Every sampled candidate stays in the trace, and says which it was merged with.
          expect(step.sameAs).toHaveLength(step.candidates.length);
          step.sameAs.forEach((first, i) => {
            expect(first).toBeLessThanOrEqual(i);
            expect(step.candidates[first]!.text).toBe(step.candidates[i]!.text);
            expect(step.sameAs[first]).toBe(first);
          });
          if (step.candidates.length === 4) expect(new Set(step.sameAs).size).toBe(groups);
          expect(step.candidates.length).toBe(
            plain.result.steps.find((s) => s.label === step.label)?.candidates.length ?? step.candidates.length,
          );
        }
        for (const [key, requests] of merged.asked) {
          const checks = requests.filter((r) => "kind" in r && r.kind === "check").map((r) => textsOf(r)[0]);
          const scored = requests.filter((r) => !("kind" in r)).map((r) => textsOf(r)[0]);
          const pairs = requests.filter((r) => "kind" in r && r.kind === "compare").map((r) => textsOf(r).sort().join("|"));
          // A check or a score once per distinct text; never two equal texts compared; a pair of texts judged once.
          expect(new Set(checks).size, key).toBe(checks.length);
          expect(new Set(scored).size, key).toBe(scored.length);
          expect(new Set(pairs).size, key).toBe(pairs.length);
          for (const r of requests) if ("kind" in r && r.kind === "compare") expect(r.first, key).not.toBe(r.second);
        }
        const calls = (r: Run) => [...r.asked.values()].reduce((n, rs) => n + rs.length, 0);
        // Saved calls are exactly those the unmerged search asked and the merged one did not.
        expect(merged.result.counts.saved).toBe(calls(plain) - calls(merged));
        expect(plain.result.counts.saved).toBe(0);
        expect(merged.result.counts.candidates).toBe(plain.result.counts.candidates);
        expect(merged.result.counts.generatedTokens).toBe(plain.result.counts.generatedTokens);
        const { comparisons, checks, verifications } = merged.result.counts;
        expect(comparisons + checks + verifications).toBe(calls(merged));
        if (pattern === "all different") expect(calls(merged)).toBe(calls(plain));
        if (pattern === "all equal" && (params.strategy === "stage" || params.strategy === "best-of-n")) {
          // A step whose candidates all agree needs no judge at all.
          expect(calls(merged)).toBe(0);
          expect(plain.result.counts.saved + calls(plain)).toBeGreaterThan(0);
        }
        if (params.strategy === "vote" || params.strategy === "vote-weighted") expect(calls(plain)).toBe(0);
      });
    }
  }

  it("stage N=4 with two groups A B A B: one comparison a step, both checks, and the trace says which matches were merged", async () => {
    const { result, asked } = await run({ itemId: "m", seed: 1, strategy: "stage", beam: 4 }, "two groups");
    for (const stage of STAGES) {
      const requests = asked.get(stage)!;
      expect(requests.filter((r) => "kind" in r && r.kind === "compare")).toHaveLength(1);
      expect(requests.filter((r) => "kind" in r && r.kind === "check")).toHaveLength(stage === "REASONING" ? 2 : 0);
    }
    const step = result.steps.find((s) => s.label === ("CAPTION" satisfies Stage))!;
    expect(step.sameAs).toEqual([0, 1, 0, 1]);
    // c0 v c1 is judged; c2 v c3 is the same pair of texts; c1 v c3 are copies of one text.
    expect(step.comparisons.map((c) => [c.first, c.second, c.reason, c.id])).toEqual([
      [0, 1, "judge", "m:CAPTION:c0-vs-c1"],
      [2, 3, "repeat", "m:CAPTION:c0-vs-c1"],
      [1, 3, "equal", null],
    ]);
    expect(step.winner).toBe(1);
    expect(result.counts).toMatchObject({ candidates: 16, distinct: 8, comparisons: 4, checks: 2, saved: 4 * 2 + 2 });
  });
});
