import { readFileSync } from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";
import { renderJudgeText, type JudgeTemplates } from "../../shared/core/prompts/templates.ts";
import type { CheckRequest, CompareRequest } from "../../shared/core/search/types.ts";
import type { AnswerLogits, Backend, ScoredPrompt } from "../../workers/engine/backend.ts";
import type { ItemContext } from "../../workers/engine/item.ts";
import {
  answerLogLikelihoods,
  Judge,
  parseCheckVerdict,
  parseCompareVerdict,
  verdictAnswers,
} from "../../workers/engine/judge.ts";
import { REFERENCE_SAMPLING } from "../../workers/engine/sampler.ts";
import type { EngineTokenizer } from "../../workers/engine/tokenizer.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");

const TEMPLATES: JudgeTemplates = {
  compare: { SUMMARY: "", CAPTION: "", REASONING: "", CONCLUSION: "", all: "", sentence: "" },
  reasoning_check: "",
  verdict_prefix: "I choose response",
  choices: { "1": " 1", "2": " 2" },
  check_answers: { correct: "correct", incorrect: "incorrect" },
};

describe("generated judge answers", () => {
  it("reads the verdict of a compare answer", () => {
    expect(parseCompareVerdict(TEMPLATES, "I choose response 1")).toBe(1);
    expect(parseCompareVerdict(TEMPLATES, "Since the caption counts correctly, I choose response 2.")).toBe(2);
    expect(parseCompareVerdict(TEMPLATES, "I choose response2")).toBe(2);
    expect(parseCompareVerdict(TEMPLATES, "I choose response 12")).toBeNull();
    expect(parseCompareVerdict(TEMPLATES, "response 1 is better")).toBeNull();
    expect(parseCompareVerdict(TEMPLATES, "")).toBeNull();
  });

  it("follows the model's own wording", () => {
    const t = { ...TEMPLATES, verdict_prefix: "Best:", choices: { "1": " first", "2": " second" } };
    expect(parseCompareVerdict(t, "Best: second")).toBe(2);
    expect(parseCompareVerdict(t, "I choose response 1")).toBe(1);
  });

  it("reads a check answer without mistaking incorrect for correct", () => {
    expect(parseCheckVerdict(TEMPLATES, "correct")).toBe("correct");
    expect(parseCheckVerdict(TEMPLATES, "incorrect")).toBe("incorrect");
    expect(parseCheckVerdict(TEMPLATES, "The reasoning is Incorrect.")).toBe("incorrect");
    expect(parseCheckVerdict(TEMPLATES, "uncorrected")).toBeNull();
    expect(parseCheckVerdict(TEMPLATES, "I choose response 1")).toBeNull();
  });
});

function loadEncoder(dir: string, json: string, config: string) {
  const t = new Tokenizer(
    JSON.parse(readFileSync(path.join(dir, json), "utf8")),
    JSON.parse(readFileSync(path.join(dir, config), "utf8")),
  );
  return { encode: (text: string) => t.encode(text, { add_special_tokens: false }).ids };
}

describe("score-mode answers", () => {
  it("are one token each in the bundled tokenizer", () => {
    const bundled = loadEncoder(path.join(ROOT, "models/stagebeam-tiny"), "tokenizer.json", "tokenizer_config.json");
    const a = verdictAnswers(bundled, TEMPLATES);
    for (const ids of [a.choice1, a.choice2, a.correct, a.incorrect]) expect(ids).toHaveLength(1);
  });

  it("may share their first tokens, as ' 1' and ' 2' do in a Llama-style tokenizer", () => {
    const llama = loadEncoder(
      path.join(ROOT, "test/unit/fixtures"),
      "llama-style-tokenizer.json",
      "llama-style-tokenizer_config.json",
    );
    const a = verdictAnswers(llama, TEMPLATES);
    expect(a.choice1).toHaveLength(2);
    expect(a.choice1[0]).toBe(a.choice2[0]);
    expect(a.correct.length).toBeGreaterThan(1);
  });

  it("must differ and must not be empty", () => {
    const chars = { encode: (text: string) => [...text].map((c) => c.charCodeAt(0)) };
    expect(() => verdictAnswers(chars, { ...TEMPLATES, choices: { "1": " 1", "2": " 1" } })).toThrow(
      /choices "1" and "2" are the same tokens/,
    );
    expect(() => verdictAnswers(chars, { ...TEMPLATES, check_answers: { correct: "", incorrect: "no" } })).toThrow(
      /tokenizes to nothing/,
    );
  });
});

/** A deterministic stand-in for a language model over a small vocabulary. */
const VOCAB = 128;
function lmLogits(ids: readonly number[]): Float32Array {
  let h = 2166136261;
  for (const id of ids) h = Math.imul(h ^ id, 16777619) >>> 0;
  return Float32Array.from({ length: VOCAB }, (_, v) => 4 * Math.sin((h % 9973) * 0.001 * (v + 1) + v));
}

function logProb(logits: Float32Array, id: number): number {
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  return logits[id]! - (max + Math.log(sum));
}

describe("answer log-likelihoods", () => {
  it("of one-token answers are the log-softmax at those ids, bit for bit", () => {
    const logits = lmLogits([1, 2, 3]);
    const [a, b] = answerLogLikelihoods([[7], [9]], [[logits], [logits]]);
    expect(a).toBe(logProb(logits, 7));
    expect(b).toBe(logProb(logits, 9));
  });

  it("of longer answers sum each token's log-prob", () => {
    const rows = [lmLogits([1]), lmLogits([1, 5]), lmLogits([1, 5, 6])];
    const [a] = answerLogLikelihoods([[5, 6, 7]], [rows]);
    expect(a).toBeCloseTo(logProb(rows[0]!, 5) + logProb(rows[1]!, 6) + logProb(rows[2]!, 7), 12);
  });
});

describe("the score judge with answers of several tokens", () => {
  // Character-level: " 1" and " 2" share their first token (the space), as in Llama and SmolLM2.
  const IMAGE = 1;
  const encode = (text: string) => [...text].map((c) => c.charCodeAt(0) % VOCAB);
  const tokenizer = {
    imageTokenId: IMAGE,
    imageSeqLength: 1,
    encode,
    promptIds: (text: string) => [IMAGE, ...encode(text)],
    renderPrompt: (text: string) => text,
  } as unknown as EngineTokenizer;
  const templates: JudgeTemplates = JSON.parse(
    readFileSync(path.join(ROOT, "models/stagebeam-tiny/judge_templates.json"), "utf8"),
  );
  const passes: ScoredPrompt[] = [];
  const backend: Pick<Backend, "answerLogits"> = {
    async answerLogits(_ctx, prompts): Promise<AnswerLogits[]> {
      passes.push(...prompts);
      return prompts.map((p) => p.answers.map((a) => a.map((_, k) => lmLogits([...p.ids, ...a.slice(0, k)]))));
    },
  };
  const judge = new Judge({
    backend: backend as Backend,
    tokenizer,
    templates,
    contextLength: 4096,
    maxTokens: 16,
    sampling: REFERENCE_SAMPLING,
  });
  // The item's image expansion: one image token, then the text (renderPrompt leaves it as it is).
  const ctx = { question: "How many red objects?", imageTokenCount: 1, expand: tokenizer.promptIds } as unknown as ItemContext;
  const compare: CompareRequest = {
    id: "i:CAPTION:c0-vs-c1",
    kind: "compare",
    template: "CAPTION",
    hint: "",
    first: "<CAPTION>Two red squares.</CAPTION>",
    second: "<CAPTION>One blue circle.</CAPTION>",
  };
  const likelihood = (ids: number[], answer: number[]) =>
    answer.reduce((sum, id, k) => sum + logProb(lmLogits([...ids, ...answer.slice(0, k)]), id), 0);

  it("compares the choices' whole continuations, both orders averaged", async () => {
    const [ab] = await judge.judge(ctx, [compare], "score");
    const [ba] = await judge.judge(ctx, [{ ...compare, first: compare.second, second: compare.first }], "score");
    const prompt = (c: CompareRequest) => [
      ...tokenizer.promptIds(renderJudgeText(templates, ctx.question, c)),
      ...encode(templates.verdict_prefix),
    ];
    const swapped = { ...compare, first: compare.second, second: compare.first };
    const one = encode(" 1");
    const two = encode(" 2");
    const forward = likelihood(prompt(compare), one) - likelihood(prompt(compare), two);
    const back = likelihood(prompt(swapped), two) - likelihood(prompt(swapped), one);
    const detail = ab!.detail as { score: number; forward: number; swapped: number };
    expect(detail.forward).toBeCloseTo(forward, 5);
    expect(detail.swapped).toBeCloseTo(back, 5);
    expect(detail.score).toBeCloseTo((forward + back) / 2, 5);
    expect(ab!.verdict).toBe(detail.score >= 0 ? 1 : 2);
    expect((ba!.detail as { score: number }).score).toBe(-detail.score);
    expect(passes.slice(0, 2).map((p) => p.answers)).toEqual([
      [one, two],
      [one, two],
    ]);
  });

  it("reads a reasoning check from the whole `correct` and `incorrect` answers", async () => {
    const check: CheckRequest = {
      id: "i:REASONING:c0-check",
      kind: "check",
      template: "reasoning_check",
      hint: "",
      candidate: "<REASONING>1 + 1 = 2.</REASONING>",
    };
    const [r] = await judge.judge(ctx, [check], "score");
    const ids = tokenizer.promptIds(renderJudgeText(templates, ctx.question, check));
    const c = likelihood(ids, encode("correct"));
    const ic = likelihood(ids, encode("incorrect"));
    expect(r!.detail).toMatchObject({ mode: "score" });
    expect((r!.detail as { score: number }).score).toBeCloseTo(c - ic, 5);
    expect(r!.verdict).toBe(c >= ic ? "correct" : "incorrect");
  });

  it("skips a request whose prompt and longest answer do not fit the context window", async () => {
    const prompt = [
      ...tokenizer.promptIds(renderJudgeText(templates, ctx.question, compare)),
      ...encode(templates.verdict_prefix),
    ];
    const tight = new Judge({
      backend: backend as Backend,
      tokenizer,
      templates,
      contextLength: prompt.length,
      maxTokens: 16,
      sampling: REFERENCE_SAMPLING,
    });
    const [r] = await tight.judge(ctx, [compare], "score");
    expect(r!.detail).toMatchObject({ mode: "score", skipped: expect.stringContaining("context window") });
  });
});
