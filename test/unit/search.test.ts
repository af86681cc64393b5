import { describe, expect, it } from "vitest";
import { closeTag, openTag, STAGES, type Stage } from "../../shared/core/protocol/stages.ts";
import {
  apply,
  createSearch,
  next,
  parseSearchState,
  runSearch,
  sentenceEnd,
  type CheckRequest,
  type CompareRequest,
  type GenerateRequest,
  type GenerateResult,
  type JudgeRequest,
  type JudgeResult,
  type SearchParamsInput,
  type SearchResult,
  type SearchState,
  type VerifyRequest,
  type VerifyResult,
  type Work,
} from "../../shared/core/search/index.ts";
import { tallyVotes, type Ballot } from "../../shared/core/search/vote.ts";

// ---------------------------------------------------------------------------------------------
// A fake driver: generations scripted by request id, verdicts by a quality score `q=<n>` that
// the scripted texts carry (the higher one wins), unless a test scripts them itself.

type Generated = Omit<GenerateResult, "id">;

interface Script {
  generate(req: GenerateRequest): Generated;
  compare?(req: CompareRequest): 1 | 2;
  check?(req: CheckRequest): "correct" | "incorrect";
  verify?(req: VerifyRequest): number;
}

interface Run {
  result: SearchResult;
  works: Work[];
  states: SearchState[];
}

const quality = (text: string): number => Number(/q=(\d+)/.exec(text)?.[1] ?? 0);
const byQuality = (req: CompareRequest): 1 | 2 => (quality(req.second) > quality(req.first) ? 2 : 1);

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function drive(params: SearchParamsInput, script: Script, maxIterations = 500): Run {
  let state = createSearch(params);
  const works: Work[] = [];
  const states: SearchState[] = [state];
  for (let i = 0; i < maxIterations; i++) {
    // The fleet driver keeps the state in job data: it must come back from JSON unchanged.
    const revived = parseSearchState(JSON.parse(JSON.stringify(state)));
    expect(revived).toStrictEqual(state);
    const work = next(state);
    expect(next(revived)).toStrictEqual(work);
    works.push(work);
    if (work.kind === "done") return { result: work.result, works, states };
    expect(work.requests.length).toBeGreaterThan(0);
    const results: (GenerateResult | JudgeResult | VerifyResult)[] =
      work.kind === "generate"
        ? work.requests.map((r) => ({ id: r.id, ...script.generate(r) }))
        : work.kind === "verify"
          ? work.requests.map((r) => {
              const score = (script.verify ?? ((v: VerifyRequest) => quality(v.candidate) / 10))(r);
              return { id: r.id, score, steps: [score] };
            })
          : work.requests.map((r) =>
              r.kind === "compare"
                ? {
                    id: r.id,
                    verdict: (script.compare ?? byQuality)(r),
                    detail: `I choose response ${(script.compare ?? byQuality)(r)}`,
                  }
                : { id: r.id, verdict: (script.check ?? (() => "correct" as const))(r) },
            );
    const snapshot = structuredClone(state);
    // apply must not touch its input; frozen objects make any write throw.
    state = apply(deepFreeze(state), deepFreeze(results));
    expect(states.at(-1)).toStrictEqual(snapshot);
    states.push(state);
  }
  throw new Error("search did not finish");
}

const generated = (text: string, extra: Partial<Generated> = {}): Generated => ({
  text,
  tokens: text.split(/\s+/).length,
  truncated: false,
  ...extra,
});

const candidateOf = (id: string): number => Number(/:c(\d+)$/.exec(id)?.[1]);

/** Stage candidates `<S>S of c<i> q=<quality></S>`; the quality table defaults to the index. */
function stageScript(
  qualities: Partial<Record<Stage, number[]>> = {},
  extra?: (req: GenerateRequest, i: number) => Partial<Generated>,
): Script {
  return {
    generate(req) {
      expect(req.stop.kind).toBe("stage");
      const stage = (req.stop as { stage: Stage }).stage;
      const i = candidateOf(req.id);
      const q = qualities[stage]?.[i] ?? i;
      return generated(`${openTag(stage)}${stage} of c${i} q=${q}${closeTag(stage)}`, extra?.(req, i));
    },
  };
}

const judgeRequests = (run: Run) => run.works.flatMap((w) => (w.kind === "judge" ? w.requests : []));
const generateRequests = (run: Run) => run.works.flatMap((w) => (w.kind === "generate" ? w.requests : []));

// ---------------------------------------------------------------------------------------------

describe("strategy walks", () => {
  it("stage: one step per stage, the best candidate of each, judge template per stage", () => {
    const run = drive(
      { itemId: "item-1", strategy: "stage", beam: 4, seed: 7 },
      stageScript({
        SUMMARY: [0, 3, 1, 2],
        CAPTION: [5, 1, 2, 0],
        REASONING: [1, 1, 9, 1],
        CONCLUSION: [0, 0, 0, 4],
      }),
    );
    const { result } = run;
    expect(result.steps.map((s) => s.label)).toEqual([...STAGES]);
    expect(result.steps.map((s) => s.winner)).toEqual([1, 0, 2, 3]);
    expect(result.wellFormed).toBe(true);
    expect(result.text).toBe(
      "<SUMMARY>SUMMARY of c1 q=3</SUMMARY><CAPTION>CAPTION of c0 q=5</CAPTION>" +
        "<REASONING>REASONING of c2 q=9</REASONING><CONCLUSION>CONCLUSION of c3 q=4</CONCLUSION>",
    );
    expect(result.answer).toBe("CONCLUSION of c3 q=4");
    expect(result.stages.CAPTION).toBe("CAPTION of c0 q=5");
    expect(result.counts).toEqual({
      candidates: 16,
      distinct: 16,
      comparisons: 12,
      checks: 4,
      verifications: 0,
      saved: 0,
      generatedTokens: result.counts.generatedTokens,
    });
    expect(result.counts.generatedTokens).toBe(result.steps.flatMap((s) => s.candidates).reduce((n, c) => n + c.tokens, 0));

    // Each stage continues the accepted text and stops at its own end tag.
    const gens = generateRequests(run);
    expect(gens.map((g) => g.stop)).toEqual(STAGES.flatMap((stage) => Array(4).fill({ kind: "stage", stage })));
    expect(gens.filter((g) => g.id.endsWith(":c0")).map((g) => g.prefix)).toEqual([
      "",
      "<SUMMARY>SUMMARY of c1 q=3</SUMMARY>",
      "<SUMMARY>SUMMARY of c1 q=3</SUMMARY><CAPTION>CAPTION of c0 q=5</CAPTION>",
      "<SUMMARY>SUMMARY of c1 q=3</SUMMARY><CAPTION>CAPTION of c0 q=5</CAPTION><REASONING>REASONING of c2 q=9</REASONING>",
    ]);
    const compares = judgeRequests(run).filter((r): r is CompareRequest => r.kind === "compare");
    expect(compares.map((c) => c.template)).toEqual(STAGES.flatMap((s) => Array(3).fill(s)));
    expect(compares.find((c) => c.template === "CAPTION")?.hint).toBe("<SUMMARY>SUMMARY of c1 q=3</SUMMARY>");
    // Every verdict, with its detail, is in the trace.
    for (const step of result.steps) {
      expect(step.comparisons).toHaveLength(3);
      for (const c of step.comparisons) expect(c.detail).toBe(`I choose response ${c.verdict}`);
    }
  });

  it("best-of-n: N whole answers judged as wholes with the `all` template", () => {
    const answer = (i: number) =>
      `<SUMMARY>s${i}</SUMMARY><CAPTION>c${i}</CAPTION><REASONING>r${i} q=${(i * 5) % 7}</REASONING><CONCLUSION>${i}</CONCLUSION>`;
    const run = drive(
      { itemId: "bon", strategy: "best-of-n", beam: 5, seed: 1 },
      {
        generate(req) {
          expect(req).toMatchObject({ prefix: "", stop: { kind: "end" }, maxTokens: 4 * 512 });
          return generated(answer(candidateOf(req.id)), { finished: true });
        },
      },
    );
    // qualities 0,5,3,1,6 → c4 wins
    expect(run.result.steps).toHaveLength(1);
    expect(run.result.steps[0]!.label).toBe("answer");
    expect(run.result.steps[0]!.winner).toBe(4);
    expect(run.result.text).toBe(answer(4));
    expect(run.result.answer).toBe("4");
    expect(run.result.wellFormed).toBe(true);
    const judged = judgeRequests(run);
    expect(judged).toHaveLength(4);
    expect(judged.every((r) => r.kind === "compare" && r.template === "all" && r.hint === "")).toBe(true);
    expect(run.result.counts).toMatchObject({ candidates: 5, comparisons: 4, checks: 0 });
  });

  it("none: one sampled pass and no judge, whatever the beam", () => {
    const text = "<SUMMARY>a</SUMMARY><CAPTION>b</CAPTION><REASONING>c</REASONING><CONCLUSION> yes </CONCLUSION>";
    const run = drive(
      { itemId: "one", strategy: "none", beam: 3, seed: 2 },
      {
        generate: () => generated(text, { finished: true }),
      },
    );
    expect(run.works.map((w) => w.kind)).toEqual(["generate", "done"]);
    expect(generateRequests(run)).toHaveLength(1);
    expect(run.result).toMatchObject({ text, answer: "yes", wellFormed: true });
    expect(run.result.counts).toMatchObject({ candidates: 1, comparisons: 0, checks: 0 });
  });

  const SENTENCES = [
    "<SUMMARY>I count the cubes.</SUMMARY>",
    "<CAPTION>There are three cubes.",
    " Two are red.</CAPTION>",
    "<REASONING>Three cubes minus one is two.</REASONING>",
    "<CONCLUSION>2</CONCLUSION>",
  ];

  it("sentence: one sentence per step until the CONCLUSION end tag", () => {
    const run = drive(
      { itemId: "sent", strategy: "sentence", beam: 3, seed: 3 },
      {
        generate(req) {
          expect(req.stop).toEqual({ kind: "sentence" });
          const step = Number(/:s(\d+):/.exec(req.id)?.[1]);
          const i = candidateOf(req.id);
          // candidate 2 carries the better score
          return generated(SENTENCES[step - 1]!.replace(/^(<[A-Z]+>)?/, `$1q=${i === 2 ? 1 : 0} `));
        },
      },
    );
    expect(run.result.steps.map((s) => s.label)).toEqual(SENTENCES.map((_, k) => `sentence ${k + 1}`));
    expect(run.result.steps.every((s) => s.winner === 2)).toBe(true);
    expect(run.result.wellFormed).toBe(true);
    expect(run.result.answer).toBe("q=1 2");
    const compares = judgeRequests(run);
    // c0 and c1 write the same sentence: their match needs no judge, c2 meets the text once.
    expect(compares).toHaveLength(SENTENCES.length);
    expect(run.result.counts).toMatchObject({ candidates: 15, distinct: 10, saved: SENTENCES.length });
    expect(compares.every((r) => r.kind === "compare" && r.template === "sentence")).toBe(true);
    // each step's judge sees the sentences accepted before it
    const hints = [...new Set(compares.map((r) => r.hint))];
    expect(hints).toHaveLength(SENTENCES.length);
  });

  it("the scripted sentences are what the shared boundary rule cuts", () => {
    const whole = SENTENCES.join("");
    const cut: string[] = [];
    for (let at = 0; at < whole.length; ) {
      const end = sentenceEnd(whole, at)!;
      cut.push(whole.slice(at, end));
      at = end;
    }
    expect(cut).toEqual(SENTENCES);
  });

  it("sentence: stops at the step cap, not well formed", () => {
    const run = drive(
      { itemId: "cap", strategy: "sentence", beam: 2, seed: 3, maxSentenceSteps: 4 },
      {
        generate: (req) => generated(` Again ${candidateOf(req.id)}.`),
      },
    );
    expect(run.result.steps).toHaveLength(4);
    expect(run.result.wellFormed).toBe(false);
    expect(run.result.answer).toBeNull();
  });

  it("sentence: stops when the accepted sentence ended with the engine eos", () => {
    const run = drive(
      { itemId: "eos", strategy: "sentence", beam: 2, seed: 3 },
      {
        generate: (req) => {
          const step = Number(/:s(\d+):/.exec(req.id)?.[1]);
          return generated(` Word ${step}.`, { finished: step === 2 });
        },
      },
    );
    expect(run.result.steps).toHaveLength(2);
    expect(run.result.wellFormed).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe("tournament", () => {
  const strengthOrders = (n: number): number[][] => {
    // a few permutations of strengths per N: ascending, descending, and a scrambled one
    const asc = Array.from({ length: n }, (_, i) => i);
    const scrambled = asc.map((i) => (i * 5 + 3) % n);
    return [asc, [...asc].reverse(), scrambled];
  };

  for (let n = 1; n <= 8; n++) {
    it(`N=${n}: the verdicts' favourite wins after N-1 comparisons in ceil(log2 N) rounds`, () => {
      for (const strengths of strengthOrders(n)) {
        const run = drive(
          { itemId: `t${n}`, strategy: "best-of-n", beam: n, seed: 0 },
          {
            generate: (req) => generated(`answer ${candidateOf(req.id)} q=${strengths[candidateOf(req.id)]}`),
          },
        );
        const step = run.result.steps[0]!;
        const best = strengths.indexOf(Math.max(...strengths));
        expect(step.winner).toBe(best);
        expect(step.comparisons).toHaveLength(n - 1);
        expect(run.result.counts.comparisons).toBe(n - 1);
        const judgeWorks = run.works.filter((w) => w.kind === "judge");
        expect(judgeWorks).toHaveLength(Math.ceil(Math.log2(n)));
        expect(new Set(step.comparisons.map((c) => c.round)).size).toBe(Math.ceil(Math.log2(n)));
        // a candidate loses at most once and the winner never
        const losers = step.comparisons.map((c) => (c.winner === c.first ? c.second : c.first));
        expect(new Set(losers).size).toBe(n - 1);
        expect(losers).not.toContain(best);
      }
    });
  }

  it("pairs c0 v c1, c2 v c3, … and gives the odd one out a bye", () => {
    const run = drive(
      { itemId: "bracket", strategy: "best-of-n", beam: 5, seed: 0 },
      {
        generate: (req) => generated(`a q=${candidateOf(req.id)}`),
      },
    );
    const rounds = run.works.filter((w) => w.kind === "judge").map((w) => w.requests.map((r) => r.id.split(":")[2]));
    expect(rounds).toEqual([["c0-vs-c1", "c2-vs-c3"], ["c1-vs-c3"], ["c3-vs-c4"]]);
  });

  it("follows the verdicts, not the texts", () => {
    // The judge always prefers the second response: the last entrant of each pair goes on.
    const run = drive(
      { itemId: "v", strategy: "best-of-n", beam: 4, seed: 0 },
      {
        generate: (req) => generated(`a ${candidateOf(req.id)}`),
        compare: () => 2,
      },
    );
    expect(run.result.steps[0]!.winner).toBe(3);
    const run1 = drive(
      { itemId: "v", strategy: "best-of-n", beam: 4, seed: 0 },
      {
        generate: (req) => generated(`a ${candidateOf(req.id)}`),
        compare: () => 1,
      },
    );
    expect(run1.result.steps[0]!.winner).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe("REASONING check", () => {
  it("drops candidates judged incorrect before the tournament", () => {
    const run = drive(
      { itemId: "chk", strategy: "stage", beam: 4, seed: 0 },
      {
        ...stageScript({ REASONING: [9, 1, 8, 2] }),
        check: (req) => (/c[13] /.test(req.candidate) ? "correct" : "incorrect"),
      },
    );
    const reasoning = run.result.steps.find((s) => s.label === "REASONING")!;
    expect(reasoning.checks.map((c) => [c.candidate, c.verdict])).toEqual([
      [0, "incorrect"],
      [1, "correct"],
      [2, "incorrect"],
      [3, "correct"],
    ]);
    expect(reasoning.entrants).toEqual([1, 3]);
    expect(reasoning.comparisons).toHaveLength(1);
    expect(reasoning.winner).toBe(3); // the best remaining, though c0 and c2 scored higher
    expect(run.result.counts.checks).toBe(4);
    const checks = judgeRequests(run).filter((r): r is CheckRequest => r.kind === "check");
    expect(checks).toHaveLength(4);
    expect(checks[0]).toMatchObject({ template: "reasoning_check", id: "chk:REASONING:c0-check" });
    expect(checks[0]!.hint).toMatch(/^<SUMMARY>.*<\/CAPTION>$/);
    // only REASONING is checked
    expect(run.result.steps.filter((s) => s.checks.length > 0).map((s) => s.label)).toEqual(["REASONING"]);
  });

  it("keeps every candidate when all are judged incorrect", () => {
    const run = drive(
      { itemId: "chk", strategy: "stage", beam: 4, seed: 0 },
      {
        ...stageScript({ REASONING: [9, 1, 8, 2] }),
        check: () => "incorrect",
      },
    );
    const reasoning = run.result.steps.find((s) => s.label === "REASONING")!;
    expect(reasoning.entrants).toEqual([0, 1, 2, 3]);
    expect(reasoning.comparisons).toHaveLength(3);
    expect(reasoning.winner).toBe(0);
  });

  it("is not asked with a single candidate", () => {
    const run = drive({ itemId: "chk1", strategy: "stage", beam: 1, seed: 0 }, stageScript());
    expect(judgeRequests(run)).toHaveLength(0);
    expect(run.result.wellFormed).toBe(true);
    expect(run.result.counts).toMatchObject({ candidates: 4, comparisons: 0, checks: 0 });
  });
});

// ---------------------------------------------------------------------------------------------

describe("defective candidates", () => {
  it("a truncated candidate loses to a complete one without a comparison", () => {
    // c0 is truncated but would win on quality
    const run = drive(
      { itemId: "tr", strategy: "stage", beam: 4, seed: 0 },
      {
        generate(req) {
          const base = stageScript({ SUMMARY: [9, 1, 2, 3] }).generate(req);
          if (req.id === "tr:SUMMARY:c0") return { text: "<SUMMARY>SUMMARY of c0 q=9 and on and", tokens: 512, truncated: true };
          return base;
        },
      },
    );
    const summary = run.result.steps[0]!;
    expect(summary.candidates[0]).toMatchObject({ truncated: true, defect: "truncated" });
    expect(summary.comparisons[0]).toEqual({
      id: null,
      round: 0,
      first: 0,
      second: 1,
      verdict: 2,
      winner: 1,
      reason: "truncated",
      detail: null,
    });
    expect(summary.comparisons).toHaveLength(3);
    expect(summary.winner).toBe(3);
    const summaryJudged = judgeRequests(run).filter((r) => r.id.startsWith("tr:SUMMARY:"));
    expect(summaryJudged.map((r) => r.id)).toEqual(["tr:SUMMARY:c2-vs-c3", "tr:SUMMARY:c1-vs-c3"]);
    expect(run.result.counts.comparisons).toBe(2 + 3 + 3 + 3);
    expect(run.result.wellFormed).toBe(true);
  });

  it("a truncated winner lets the search go on but the result is not well formed", () => {
    const run = drive(
      { itemId: "trw", strategy: "stage", beam: 1, seed: 0 },
      stageScript({}, (req) => (req.id === "trw:CAPTION:c0" ? { truncated: true } : {})),
    );
    expect(run.result.steps.map((s) => s.label)).toEqual([...STAGES]);
    expect(run.result.steps[1]!.candidates[0]!.truncated).toBe(true);
    // the text itself parses, but a truncated piece was accepted
    expect(run.result.wellFormed).toBe(false);
  });

  it("two truncated candidates still go to the judge; the truncated winner marks the result", () => {
    const run = drive(
      { itemId: "tt", strategy: "best-of-n", beam: 2, seed: 0 },
      {
        generate: (req) => ({ text: `<SUMMARY>cut q=${candidateOf(req.id)}`, tokens: 2048, truncated: true }),
      },
    );
    expect(run.result.steps[0]!.comparisons[0]!.reason).toBe("judge");
    expect(run.result.steps[0]!.winner).toBe(1);
    expect(run.result.wellFormed).toBe(false);
    expect(run.result.answer).toBeNull();
  });

  it("a stage candidate that misses its end tag loses as malformed", () => {
    const run = drive(
      { itemId: "mf", strategy: "stage", beam: 2, seed: 0 },
      {
        generate(req) {
          const base = stageScript({ SUMMARY: [9, 1] }).generate(req);
          return req.id === "mf:SUMMARY:c0" ? { text: "<SUMMARY>q=9 no end", tokens: 4, truncated: false, finished: true } : base;
        },
      },
    );
    expect(run.result.steps[0]!.comparisons[0]).toMatchObject({ reason: "malformed", winner: 1, id: null });
    expect(run.result.wellFormed).toBe(true);
  });

  it("a whole answer that is not well formed loses to one that is", () => {
    const good = "<SUMMARY>a</SUMMARY><CAPTION>b</CAPTION><REASONING>c</REASONING><CONCLUSION>1</CONCLUSION>";
    const run = drive(
      { itemId: "mfw", strategy: "best-of-n", beam: 2, seed: 0 },
      {
        generate: (req) =>
          generated(
            candidateOf(req.id) === 1 ? good.replace("<REASONING>c", "<REASONING>c q=1") : `q=9 ${good.replace("<CAPTION>", "")}`,
          ),
        compare: () => {
          throw new Error("no judge needed");
        },
      },
    );
    expect(run.result.steps[0]!.winner).toBe(1);
    expect(run.result.counts.comparisons).toBe(0);
  });

  it("the stage search ends when the accepted stage ended with eos", () => {
    const run = drive(
      { itemId: "eos", strategy: "stage", beam: 1, seed: 0 },
      {
        generate: () => ({ text: "<SUMMARY>short", tokens: 2, truncated: false, finished: true }),
      },
    );
    expect(run.result.steps).toHaveLength(1);
    expect(run.result.wellFormed).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe("determinism and ids", () => {
  const everyRequest = (run: Run) =>
    run.works.flatMap((w): (GenerateRequest | JudgeRequest | VerifyRequest)[] => (w.kind === "done" ? [] : w.requests));

  it("two runs ask for the same ids and sample keys", () => {
    for (const strategy of ["none", "best-of-n", "sentence", "stage"] as const) {
      const script: Script = {
        generate: (req) =>
          req.stop.kind === "sentence"
            ? generated(`<CONCLUSION>${candidateOf(req.id)}</CONCLUSION>`)
            : stageScript().generate({ ...req, stop: req.stop.kind === "end" ? { kind: "stage", stage: "SUMMARY" } : req.stop }),
      };
      const a = drive({ itemId: "det", strategy, beam: 3, seed: 42 }, script);
      const b = drive({ itemId: "det", strategy, beam: 3, seed: 42 }, script);
      expect(everyRequest(a)).toEqual(everyRequest(b));
      expect(a.result).toEqual(b.result);
    }
  });

  it("ids are unique per item, BullMQ-safe, and sample keys name seed, item, step and candidate", () => {
    const run = drive({ itemId: "item_7", strategy: "stage", beam: 3, seed: 42 }, stageScript());
    const requests = everyRequest(run);
    const ids = requests.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9:_-]+$/);
      // BullMQ accepts ':' in a custom id only when it splits into exactly three parts
      expect(id.split(":")).toHaveLength(3);
    }
    const gens = generateRequests(run);
    expect(gens[2]).toMatchObject({ id: "item_7:SUMMARY:c2", sampleKey: "42/item_7/SUMMARY/c2", maxTokens: 512 });
    expect(new Set(gens.map((g) => g.sampleKey)).size).toBe(gens.length);
  });

  it("a different seed changes only the sample keys", () => {
    const a = createSearch({ itemId: "x", strategy: "stage", beam: 2, seed: 1 });
    const b = createSearch({ itemId: "x", strategy: "stage", beam: 2, seed: 2 });
    const ga = next(a);
    const gb = next(b);
    if (ga.kind !== "generate" || gb.kind !== "generate") throw new Error("expected generate");
    expect(ga.requests.map((r) => r.id)).toEqual(gb.requests.map((r) => r.id));
    expect(ga.requests[0]!.sampleKey).not.toBe(gb.requests[0]!.sampleKey);
  });
});

// ---------------------------------------------------------------------------------------------

describe("bad input", () => {
  const ok = { itemId: "bad", strategy: "stage", beam: 2, seed: 0 } as const;

  it("rejects a beam that is not an integer >= 1", () => {
    expect(() => createSearch({ ...ok, beam: 0 })).toThrow(/beam must be an integer >= 1, got 0/);
    expect(() => createSearch({ ...ok, beam: 1.5 })).toThrow(/beam must be an integer >= 1, got 1\.5/);
    expect(() => createSearch({ ...ok, beam: -3 })).toThrow(/beam/);
  });

  it("rejects an unknown strategy, naming it and the allowed ones", () => {
    expect(() => createSearch({ ...ok, strategy: "foo" as "stage" })).toThrow(
      'strategy must be one of none, best-of-n, sentence, stage, greedy, vote, vote-weighted, swires, got "foo"',
    );
  });

  it("names the item, and rejects item ids that would break job ids, and misspelt options", () => {
    expect(() => createSearch({ ...ok, beam: 0 })).toThrow(/item "bad"/);
    expect(() => createSearch({ ...ok, itemId: "a:b" })).toThrow(/itemId/);
    expect(() => createSearch({ ...ok, maxStageToken: 5 } as never)).toThrow(/unknown parameter\(s\) maxStageToken/);
    expect(() => createSearch({ ...ok, maxSentenceSteps: 0 })).toThrow(/maxSentenceSteps must be an integer >= 1/);
  });

  it("apply insists on exactly one valid result per requested id", () => {
    const s = createSearch({ ...ok, beam: 2 });
    const r = (id: string) => ({ id, text: "<SUMMARY>x</SUMMARY>", tokens: 3, truncated: false });
    expect(() => apply(s, [r("bad:SUMMARY:c0")])).toThrow(/no result for bad:SUMMARY:c1/);
    expect(() => apply(s, [r("bad:SUMMARY:c0"), r("bad:SUMMARY:c1"), r("bad:SUMMARY:c1")])).toThrow(
      /more than one result for bad:SUMMARY:c1/,
    );
    expect(() => apply(s, [r("bad:SUMMARY:c0"), r("bad:SUMMARY:c1"), r("bad:SUMMARY:c9")])).toThrow(
      /not asked for: bad:SUMMARY:c9/,
    );
    expect(() => apply(s, [r("bad:SUMMARY:c0"), { ...r("bad:SUMMARY:c1"), tokens: -1 }])).toThrow(
      /result bad:SUMMARY:c1 is invalid: tokens/,
    );
    expect(() => apply(s, [r("bad:SUMMARY:c0"), { id: "bad:SUMMARY:c1", verdict: 1 }])).toThrow(/is invalid/);
  });

  it("apply rejects the wrong kind of verdict and results for a finished search", () => {
    let s = createSearch({ itemId: "k", strategy: "best-of-n", beam: 2, seed: 0 });
    s = apply(s, [
      { id: "k:answer:c0", text: "a", tokens: 1, truncated: false },
      { id: "k:answer:c1", text: "b", tokens: 1, truncated: false },
    ]);
    expect(() => apply(s, [{ id: "k:answer:c0-vs-c1", verdict: "correct" }])).toThrow(/k:answer:c0-vs-c1 is invalid/);
    s = apply(s, [{ id: "k:answer:c0-vs-c1", verdict: 2 }]);
    expect(next(s).kind).toBe("done");
    expect(() => apply(s, [])).toThrow(/done/);
  });

  it("parseSearchState rejects a damaged state, naming the item", () => {
    const s = JSON.parse(JSON.stringify(createSearch(ok)));
    s.prefix = 3;
    expect(() => parseSearchState(s)).toThrow(/item "bad".*invalid search state.*prefix/);
  });
});

// ---------------------------------------------------------------------------------------------

describe("verifier mode", () => {
  const verifies = (run: Run) => run.works.flatMap((w) => (w.kind === "verify" ? w.requests : []));

  it("stage: one batched scoring pass per stage keeps the top-scoring candidate; no comparisons, no check", () => {
    const run = drive(
      { itemId: "vs", strategy: "stage", beam: 4, seed: 7, verifier: true },
      stageScript({ SUMMARY: [0, 3, 1, 2], CAPTION: [5, 1, 2, 0], REASONING: [1, 1, 9, 1], CONCLUSION: [0, 0, 0, 4] }),
    );
    expect(run.works.map((w) => w.kind)).toEqual([...STAGES.flatMap(() => ["generate", "verify"]), "done"]);
    expect(run.result.steps.map((s) => s.winner)).toEqual([1, 0, 2, 3]);
    expect(run.result.counts).toMatchObject({ candidates: 16, comparisons: 0, checks: 0 });
    expect(judgeRequests(run)).toHaveLength(0);
    const caption = run.result.steps[1]!;
    // Every score is in the trace, and the ranking puts them all in order.
    expect(caption.scores.map((s) => [s.id, s.score])).toEqual([
      ["vs:CAPTION:c0-verify", 0.5],
      ["vs:CAPTION:c1-verify", 0.1],
      ["vs:CAPTION:c2-verify", 0.2],
      ["vs:CAPTION:c3-verify", 0],
    ]);
    expect(caption.ranking).toEqual([0, 2, 1, 3]);
    expect(caption.comparisons).toEqual([]);
    const v = verifies(run).find((r) => r.id === "vs:CAPTION:c2-verify")!;
    expect(v).toEqual({
      id: "vs:CAPTION:c2-verify",
      prefix: "<SUMMARY>SUMMARY of c1 q=3</SUMMARY>",
      candidate: "<CAPTION>CAPTION of c2 q=2</CAPTION>",
      stage: "CAPTION",
    });
  });

  it("a defective candidate ranks below every flawless one, whatever its score", () => {
    const run = drive(
      { itemId: "vd", strategy: "stage", beam: 3, seed: 0, verifier: true },
      stageScript({ SUMMARY: [9, 1, 2] }, (req, i) => (req.id === "vd:SUMMARY:c0" && i === 0 ? { truncated: true } : {})),
    );
    expect(run.result.steps[0]!.ranking).toEqual([2, 1, 0]);
    expect(run.result.steps[0]!.winner).toBe(2);
  });

  it("best-of-n and sentence take the verifier too, with stage null (the rule's default)", () => {
    const answer = (i: number) =>
      `<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r q=${i}</REASONING><CONCLUSION>${i}</CONCLUSION>`;
    const bon = drive(
      { itemId: "vb", strategy: "best-of-n", beam: 3, seed: 0, verifier: true },
      { generate: (req) => generated(answer([2, 7, 4][candidateOf(req.id)]!), { finished: true }) },
    );
    expect(bon.result.answer).toBe("7");
    expect(verifies(bon).every((r) => r.stage === null && r.prefix === "")).toBe(true);
    const sent = drive(
      { itemId: "vn", strategy: "sentence", beam: 2, seed: 0, verifier: true },
      { generate: (req) => generated(`<CONCLUSION>q=${candidateOf(req.id)} ${candidateOf(req.id)}</CONCLUSION>`) },
    );
    expect(sent.result.answer).toBe("q=1 1");
    expect(sent.works.map((w) => w.kind)).toEqual(["generate", "verify", "done"]);
  });

  it("one candidate needs no score", () => {
    const run = drive({ itemId: "v1", strategy: "stage", beam: 1, seed: 0, verifier: true }, stageScript());
    expect(verifies(run)).toHaveLength(0);
    expect(run.result.wellFormed).toBe(true);
  });

  it("the in-process driver refuses a verifier search on an executor without a verifier, naming the item", async () => {
    const executor = {
      generate: async (requests: GenerateRequest[]) => requests.map((r) => ({ id: r.id, ...stageScript().generate(r) })),
      judge: async () => [],
    };
    await expect(runSearch({ itemId: "nv", strategy: "stage", beam: 2, seed: 0, verifier: true }, executor)).rejects.toThrow(
      'search for item "nv": the search asks a verifier for scores, and this executor has none',
    );
  });
});

describe("votes", () => {
  const whole = (answer: string) =>
    `<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING><CONCLUSION>${answer}</CONCLUSION>`;
  const ballot = (answer: string, meanLogProb: number | null, extra: Partial<Ballot> = {}): Ballot => ({
    text: whole(answer),
    tokens: 10,
    logProb: meanLogProb === null ? null : meanLogProb * 10,
    defect: null,
    ...extra,
  });

  it("normalises answers (case, spaces, a final full stop) before counting", () => {
    const { votes, winner } = tallyVotes([ballot(" Yes.", -1), ballot("no", -0.1), ballot("yes", -2)], false);
    expect(votes.map((v) => [v.answer, v.candidates, v.weight])).toEqual([
      ["yes", [0, 2], 2],
      ["no", [1], 1],
    ]);
    // The answer's most confident voter represents it.
    expect(winner).toBe(0);
  });

  it("breaks a tie by the mean token log-probability of each answer's voters, then by the first voter", () => {
    const tie = tallyVotes([ballot("yes", -1), ballot("No", -0.1), ballot("yes.", -2), ballot("no", -0.5)], false);
    expect(tie.votes.map((v) => v.answer)).toEqual(["no", "yes"]);
    expect(tie.votes[0]!.meanLogProb).toBeCloseTo(-0.3);
    expect(tie.winner).toBe(1);
    const unknown = tallyVotes([ballot("3", null), ballot("4", null)], false);
    expect(unknown.winner).toBe(0);
  });

  it("vote-weighted: one confident answer outweighs two unsure ones", () => {
    const ballots = [ballot("yes", -3), ballot("yes", -3), ballot("no", -0.1)];
    expect(tallyVotes(ballots, false).votes[0]!.answer).toBe("yes");
    const weighted = tallyVotes(ballots, true);
    expect(weighted.votes[0]).toMatchObject({ answer: "no", candidates: [2] });
    expect(weighted.votes[0]!.weight).toBeCloseTo(Math.exp(-0.1));
    expect(weighted.winner).toBe(2);
  });

  it("only flawless answers vote while there are any; without any answer the most confident candidate wins", () => {
    const spoilt = tallyVotes(
      [ballot("7", -0.1, { defect: "malformed" }), ballot("7", -0.1, { defect: "truncated" }), ballot("2", -3)],
      false,
    );
    expect(spoilt.votes.map((v) => v.answer)).toEqual(["2"]);
    expect(spoilt.winner).toBe(2);
    const none = tallyVotes(
      [
        { text: "<SUMMARY>x", tokens: 2, logProb: -4, defect: "malformed" },
        { text: "<SUMMARY>y", tokens: 2, logProb: -1, defect: "malformed" },
      ],
      false,
    );
    expect(none).toEqual({ votes: [], winner: 1 });
  });

  it("vote and vote-weighted walk to done with no judge: one generate work, votes in the trace", () => {
    const answers = ["2", "3", " 3.", "2", "3"];
    const lp = [-0.1, -2, -2, -0.1, -2];
    for (const strategy of ["vote", "vote-weighted"] as const) {
      const run = drive(
        { itemId: "vt", strategy, beam: 5, seed: 0 },
        {
          generate: (req) =>
            generated(whole(answers[candidateOf(req.id)]!), { logProb: lp[candidateOf(req.id)]! * 4, tokens: 4 }),
          compare: () => {
            throw new Error("no judge");
          },
        },
      );
      expect(run.works.map((w) => w.kind)).toEqual(["generate", "done"]);
      const step = run.result.steps[0]!;
      expect(step.candidates.map((c) => c.logProb)).toEqual(lp.map((x) => x * 4));
      expect(step.votes.map((v) => v.answer)).toEqual(strategy === "vote" ? ["3", "2"] : ["2", "3"]);
      expect(run.result.answer).toBe(strategy === "vote" ? "3" : "2");
    }
  });

  it("greedy: one pass that asks the engine for the most likely tokens", () => {
    const run = drive({ itemId: "gr", strategy: "greedy", beam: 4, seed: 0 }, { generate: () => generated(whole("1")) });
    expect(generateRequests(run)).toEqual([expect.objectContaining({ id: "gr:answer:c0", greedy: true })]);
    expect(run.result.answer).toBe("1");
  });
});

describe("swires", () => {
  /** `<S>S k=<step key> c<i> q=<q></S>`, q from a table per step key (default 5). */
  const swiresScript = (qualities: Record<string, number[]>, verify?: Script["verify"]): Script => ({
    generate(req) {
      const stage = (req.stop as { stage: Stage }).stage;
      const key = req.id.split(":")[1]!;
      const i = candidateOf(req.id);
      return generated(`${openTag(stage)}${stage} k=${key} c${i} q=${qualities[key]?.[i] ?? 5}${closeTag(stage)}`);
    },
    ...(verify ? { verify } : {}),
  });

  it("keeps the best two captions, two reasonings from each, retraces once when no two stand out, then three conclusions", () => {
    const run = drive(
      { itemId: "sw", strategy: "swires", beam: 1, seed: 0 },
      swiresScript({ CAPTION: [3, 9, 1, 7], "REASONING-r1": [9, 8, 1, 1], CONCLUSION: [2, 6, 4] }),
    );
    expect(run.result.steps.map((s) => s.label)).toEqual([
      "SUMMARY",
      "CAPTION",
      "REASONING",
      "CAPTION (retrace 1)",
      "REASONING (retrace 1)",
      "CONCLUSION",
    ]);
    const gens = generateRequests(run);
    const prefixes = (key: string) => gens.filter((g) => g.id.split(":")[1] === key).map((g) => g.prefix);
    const summary = "<SUMMARY>SUMMARY k=SUMMARY c0 q=5</SUMMARY>";
    expect(prefixes("SUMMARY")).toEqual([""]);
    expect(prefixes("CAPTION")).toEqual(Array(4).fill(summary));
    // The best two captions (q 9 and 7), two reasonings each.
    const c1 = `${summary}<CAPTION>CAPTION k=CAPTION c1 q=9</CAPTION>`;
    const c3 = `${summary}<CAPTION>CAPTION k=CAPTION c3 q=7</CAPTION>`;
    expect(prefixes("REASONING")).toEqual([c1, c1, c3, c3]);
    // Four equal reasonings: the second best is not above mean + z·sd, so back to CAPTION, from the summary.
    expect(run.result.steps[2]!.decision).toMatchObject({ reasonings: 4, tested: 0.5, cutoff: 0.5, retrace: true });
    expect(prefixes("CAPTION-r1")).toEqual(Array(4).fill(summary));
    expect(run.result.steps[4]!.decision).toMatchObject({ reasonings: 8, tested: 0.8, retrace: false });
    // Conclusions from the best three reasonings of all eight (0.9, 0.8, then the first 0.5).
    const conclusionBases = prefixes("CONCLUSION");
    expect(conclusionBases).toHaveLength(3);
    expect(conclusionBases[0]).toMatch(/REASONING k=REASONING-r1 c0 q=9<\/REASONING>$/);
    expect(conclusionBases[1]).toMatch(/REASONING k=REASONING-r1 c1 q=8<\/REASONING>$/);
    expect(conclusionBases[2]).toMatch(/REASONING k=REASONING c0 q=5<\/REASONING>$/);
    // The best conclusion (q=6, from the second base) and its whole chain are the answer.
    expect(run.result.text).toBe(`${conclusionBases[1]}<CONCLUSION>CONCLUSION k=CONCLUSION c1 q=6</CONCLUSION>`);
    expect(run.result.wellFormed).toBe(true);
    // Every candidate but the lone summary was scored, once.
    const scored = run.result.steps.flatMap((s) => s.scores.map((x) => x.id));
    expect(scored).toHaveLength(4 + 4 + 4 + 4 + 3);
    expect(new Set(scored).size).toBe(scored.length);
  });

  it("retraces at most maxRetraces times, then writes the conclusions anyway", () => {
    const run = drive({ itemId: "sx", strategy: "swires", beam: 1, seed: 0, swires: { maxRetraces: 2 } }, swiresScript({}));
    expect(run.result.steps.map((s) => s.label)).toEqual([
      "SUMMARY",
      "CAPTION",
      "REASONING",
      "CAPTION (retrace 1)",
      "REASONING (retrace 1)",
      "CAPTION (retrace 2)",
      "REASONING (retrace 2)",
      "CONCLUSION",
    ]);
    expect(run.result.steps.at(-2)!.decision).toMatchObject({ reasonings: 12, retrace: false });
    expect(run.result.steps.at(-1)!.candidates).toHaveLength(3);
  });

  it("takes its cutoff from the population the verifier reports, the settings' one first, else from the item's reasonings", async () => {
    // Reasonings 0.9, 0.8, 0.5, 0.5: the item's own spread (mean 0.675, sd 0.18) puts the cutoff at 0.72
    // and 0.8 clears it; a population of mean 0.85, sd 0.1 puts it at 0.875 and nothing clears it.
    const script = swiresScript({ REASONING: [9, 8, 5, 5] });
    const own = drive({ itemId: "sc", strategy: "swires", beam: 1, seed: 0, swires: { maxRetraces: 1 } }, script);
    expect(own.result.steps[2]!.decision).toMatchObject({ tested: 0.8, cutoffFrom: "item", retrace: false });
    const set = drive(
      { itemId: "sc", strategy: "swires", beam: 1, seed: 0, swires: { maxRetraces: 1, population: { mean: 0.85, sd: 0.1 } } },
      script,
    );
    expect(set.result.steps[2]!.decision).toEqual({
      reasonings: 4,
      tested: 0.8,
      cutoff: 0.87533,
      cutoffFrom: "settings",
      retrace: true,
    });
    expect(set.result.steps.map((s) => s.label)).toContain("REASONING (retrace 1)");
    // A calibrated verifier reports its population with each score, and the search reads it from there.
    const reported = await runSearch(
      { itemId: "sc", strategy: "swires", beam: 1, seed: 0, swires: { maxRetraces: 1 } },
      {
        generate: async (requests) => requests.map((r) => ({ id: r.id, ...script.generate(r) })),
        judge: async () => [],
        verify: async (requests) =>
          requests.map((r) => {
            const score = quality(r.candidate) / 10;
            return { id: r.id, score, steps: [score], population: { mean: 0.85, sd: 0.1 } };
          }),
      },
    );
    expect(reported.steps[2]!.decision).toMatchObject({ cutoff: 0.87533, cutoffFrom: "verifier", retrace: true });
  });

  it("takes its widths and keep counts from the parameters", () => {
    const run = drive(
      {
        itemId: "sp",
        strategy: "swires",
        beam: 1,
        seed: 0,
        swires: { summaryWidth: 2, captionWidth: 3, captionKeep: 1, reasoningPerCaption: 3, conclusionFrom: 2, maxRetraces: 0 },
      },
      swiresScript({ REASONING: [1, 2, 3] }),
    );
    expect(run.result.steps.map((s) => s.candidates.length)).toEqual([2, 3, 3, 2]);
  });

  it("rejects misspelt swires parameters", () => {
    expect(() =>
      createSearch({ itemId: "sb", strategy: "swires", beam: 1, seed: 0, swires: { captionWidht: 3 } as never }),
    ).toThrow(/invalid search parameters/);
    expect(() => createSearch({ itemId: "sb", strategy: "swires", beam: 1, seed: 0, swires: { captionKeep: 0 } })).toThrow(
      /swires.captionKeep must be an integer >= 1, got 0/,
    );
  });
});
