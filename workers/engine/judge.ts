/**
 * The model as its own judge. A judge prompt is a user turn (image + renderJudgeText of the
 * request) followed by the judge's answer. Two modes:
 *
 * * `score`: per order, the log-likelihood of each choice's whole continuation (` 1`, ` 2`,
 *   however many tokens each takes) after prompt + verdict_prefix, teacher-forced from one
 *   forward pass over the prompt; both orders are run and the log-likelihood differences
 *   averaged, which cancels position bias. A check compares the `correct` and `incorrect`
 *   answers after the prompt the same way. When every answer is one token (the bundled
 *   tokenizer) this is the log-prob of that token at the prompt's last position, nothing more.
 * * `generate`: the judge's answer is sampled in full (stream seeded from the request id) and
 *   parsed ("I choose response 1", "correct"); an unparseable answer falls back to a score-mode
 *   verdict, recorded in the detail.
 *
 * All prompts of one call go to the backend together (one batched prefill, vision features
 * and the image block of the item's prompt reused).
 */
import { renderJudgeText, type JudgeTemplates } from "../../shared/core/prompts/templates.ts";
import type { PairwiseJudgeMode } from "../../shared/core/search/settings.ts";
import type { CheckRequest, CompareRequest, Detail, JudgeRequest, JudgeResult } from "../../shared/core/search/types.ts";
import type { AnswerLogits, Backend, ScoredPrompt } from "./backend.ts";
import { EngineRequestError } from "./errors.ts";
import type { ItemContext } from "./item.ts";
import type { SamplingParams } from "./sampler.ts";
import type { EngineTokenizer } from "./tokenizer.ts";

export interface JudgeParts {
  backend: Backend;
  tokenizer: EngineTokenizer;
  templates: JudgeTemplates;
  contextLength: number;
  /** Token cap of a generated judge answer. */
  maxTokens: number;
  sampling: SamplingParams;
}

/** Token ids of the answers score mode reads, checked once at load. */
export interface VerdictAnswers {
  choice1: number[];
  choice2: number[];
  correct: number[];
  incorrect: number[];
}

export function verdictAnswers(tokenizer: Pick<EngineTokenizer, "encode">, templates: JudgeTemplates): VerdictAnswers {
  const encode = (text: string, what: string) => {
    const ids = tokenizer.encode(text);
    if (ids.length === 0) throw new Error(`${what}: ${JSON.stringify(text)} tokenizes to nothing; expected at least one token`);
    return ids;
  };
  const a: VerdictAnswers = {
    choice1: encode(templates.choices["1"], "judge_templates.json choices.1"),
    choice2: encode(templates.choices["2"], "judge_templates.json choices.2"),
    correct: encode(templates.check_answers.correct, "judge_templates.json check_answers.correct"),
    incorrect: encode(templates.check_answers.incorrect, "judge_templates.json check_answers.incorrect"),
  };
  const same = (x: number[], y: number[]) => x.length === y.length && x.every((id, i) => id === y[i]);
  if (same(a.choice1, a.choice2)) {
    throw new Error(`judge_templates.json: choices "1" and "2" are the same tokens [${a.choice1}]; expected different answers`);
  }
  if (same(a.correct, a.incorrect)) {
    throw new Error(`judge_templates.json: check_answers are the same tokens [${a.correct}]; expected different answers`);
  }
  return a;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The verdict written in a generated judge answer, or null. */
export function parseCompareVerdict(templates: JudgeTemplates, text: string): 1 | 2 | null {
  const one = templates.choices["1"].trim();
  const two = templates.choices["2"].trim();
  const patterns: RegExp[] = [];
  if (one !== "" && two !== "" && one !== two) {
    patterns.push(new RegExp(`${escapeRe(templates.verdict_prefix.trim())}\\s*(${escapeRe(one)}|${escapeRe(two)})(?![\\w])`));
  }
  patterns.push(/I choose response\s*([12])(?!\w)/);
  for (const re of patterns) {
    const m = re.exec(text);
    if (m === null) continue;
    const v = m[1]!;
    if (v === one || v === "1") return 1;
    if (v === two || v === "2") return 2;
  }
  return null;
}

export function parseCheckVerdict(templates: JudgeTemplates, text: string): "correct" | "incorrect" | null {
  const words = [
    ["correct", templates.check_answers.correct.trim()],
    ["incorrect", templates.check_answers.incorrect.trim()],
  ] as const;
  const alternatives = [...words].filter(([, w]) => w !== "").sort((a, b) => b[1].length - a[1].length);
  if (alternatives.length < 2) return null;
  const re = new RegExp(`(?<![\\w])(${alternatives.map(([, w]) => escapeRe(w)).join("|")})(?![\\w])`, "i");
  const m = re.exec(text);
  if (m === null) return null;
  const hit = m[1]!.toLowerCase();
  for (const [verdict, word] of words) if (word.toLowerCase() === hit) return verdict;
  return null;
}

function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return max + Math.log(sum);
}

/**
 * The log-likelihood of each answer: the sum of its tokens' log-probs, token k read from
 * logits[k]. Logits shared by several answers (the same prompt, a common first token) are
 * normalised once.
 */
export function answerLogLikelihoods(answers: readonly (readonly number[])[], logits: AnswerLogits): number[] {
  const lse = new Map<Float32Array, number>();
  return answers.map((answer, a) =>
    answer.reduce((sum, id, k) => {
      const row = logits[a]![k]!;
      let z = lse.get(row);
      if (z === undefined) {
        z = logSumExp(row);
        lse.set(row, z);
      }
      return sum + (row[id]! - z);
    }, 0),
  );
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

interface PromptPlan {
  request: JudgeRequest;
  /** The prompts score mode reads the answers after: [forward, swapped] for a compare, [prompt] for a check. */
  scoreIds: number[][];
  /** The prompt a generated answer continues (request order, no verdict prefix). */
  generateIds: number[];
  /** Why the request cannot be judged by the model (prompt too long), or null. */
  skip: string | null;
}

export class Judge {
  private readonly answers: VerdictAnswers;
  constructor(private readonly p: JudgeParts) {
    this.answers = verdictAnswers(p.tokenizer, p.templates);
  }

  private scoredAnswers(request: JudgeRequest): number[][] {
    const a = this.answers;
    return request.kind === "compare" ? [a.choice1, a.choice2] : [a.correct, a.incorrect];
  }

  private promptIds(ctx: ItemContext, request: CompareRequest | CheckRequest, withPrefix: boolean): number[] {
    const { tokenizer, templates } = this.p;
    const text = renderJudgeText(templates, ctx.question, request);
    // The item's own image expansion, so the judge prompt's image block is the question prompt's.
    const ids = ctx.expand(tokenizer.renderPrompt(text));
    let images = 0;
    for (const id of ids) if (id === tokenizer.imageTokenId) images++;
    if (images !== ctx.imageTokenCount) {
      throw new EngineRequestError(
        `judge request ${request.id}: the prompt holds ${images} image tokens; expected ${ctx.imageTokenCount} (does a text contain the image token?)`,
      );
    }
    return withPrefix && request.kind === "compare" ? [...ids, ...tokenizer.encode(templates.verdict_prefix)] : ids;
  }

  private plan(ctx: ItemContext, request: JudgeRequest, mode: PairwiseJudgeMode): PromptPlan {
    const scoreIds =
      request.kind === "compare"
        ? [
            this.promptIds(ctx, request, true),
            this.promptIds(ctx, { ...request, first: request.second, second: request.first }, true),
          ]
        : [this.promptIds(ctx, request, false)];
    const generateIds = mode === "generate" ? this.promptIds(ctx, request, false) : [];
    // Teacher forcing runs all but an answer's last token on top of the prompt.
    const answerRun = Math.max(...this.scoredAnswers(request).map((a) => a.length)) - 1;
    const longest = Math.max(...scoreIds.map((s) => s.length + answerRun), generateIds.length + (mode === "generate" ? 1 : 0));
    const skip =
      longest > this.p.contextLength
        ? `the judge prompt is ${longest} tokens; the model's context window is ${this.p.contextLength}`
        : null;
    return { request, scoreIds, generateIds, skip };
  }

  async judge(ctx: ItemContext, requests: readonly JudgeRequest[], mode: PairwiseJudgeMode): Promise<JudgeResult[]> {
    const plans = requests.map((r) => this.plan(ctx, r, mode));
    const results: (JudgeResult | null)[] = plans.map((pl) =>
      pl.skip === null ? null : defaultVerdict(pl.request, { mode, skipped: pl.skip }),
    );
    const live = plans.map((pl, i) => ({ pl, i })).filter(({ pl }) => pl.skip === null);
    if (mode === "score") {
      const scored = await this.score(
        ctx,
        live.map(({ pl }) => pl),
      );
      live.forEach(({ i }, j) => {
        results[i] = scored[j]!;
      });
      return results as JudgeResult[];
    }

    const answers = await this.p.backend.continue(
      ctx,
      live.map(({ pl }) => ({
        ids: pl.generateIds,
        stop: { kind: "end" },
        maxTokens: this.p.maxTokens,
        sampleKey: `judge/${pl.request.id}`,
        purpose: "judge",
        cache: false,
      })),
      this.p.sampling,
    );
    const fallback: { i: number; pl: PromptPlan; text: string }[] = [];
    live.forEach(({ pl, i }, j) => {
      const text = answers[j]!.text;
      const base = { mode: "generate", text, tokens: answers[j]!.tokens.length };
      if (pl.request.kind === "compare") {
        const verdict = parseCompareVerdict(this.p.templates, text);
        if (verdict !== null) results[i] = { id: pl.request.id, verdict, detail: { ...base, parsed: true } };
        else fallback.push({ i, pl, text });
      } else {
        const verdict = parseCheckVerdict(this.p.templates, text);
        if (verdict !== null) results[i] = { id: pl.request.id, verdict, detail: { ...base, parsed: true } };
        else fallback.push({ i, pl, text });
      }
    });
    if (fallback.length > 0) {
      const scored = await this.score(
        ctx,
        fallback.map((f) => f.pl),
      );
      fallback.forEach((f, j) => {
        const s = scored[j]!;
        results[f.i] = {
          ...s,
          detail: { mode: "generate", text: f.text, parsed: false, fallback: s.detail ?? null },
        } as JudgeResult;
      });
    }
    return results as JudgeResult[];
  }

  /** Score-mode verdicts for the plans, all prompts in one backend call. */
  private async score(ctx: ItemContext, plans: readonly PromptPlan[]): Promise<JudgeResult[]> {
    const prompts: ScoredPrompt[] = plans.flatMap((pl) =>
      pl.scoreIds.map((ids) => ({ ids, answers: this.scoredAnswers(pl.request) })),
    );
    const logits = await this.p.backend.answerLogits(ctx, prompts);
    let at = 0;
    const next = () => {
      const i = at++;
      return answerLogLikelihoods(prompts[i]!.answers, logits[i]!) as [number, number];
    };
    return plans.map((pl): JudgeResult => {
      if (pl.request.kind === "compare") {
        const [f1, f2] = next();
        const [s1, s2] = next();
        // Positive means the request's first response is preferred.
        const forward = f1 - f2;
        const swapped = s2 - s1;
        const score = (forward + swapped) / 2;
        return {
          id: pl.request.id,
          verdict: score >= 0 ? 1 : 2,
          detail: { mode: "score", score: round(score), forward: round(forward), swapped: round(swapped) },
        };
      }
      const [c, ic] = next();
      const score = c - ic;
      return {
        id: pl.request.id,
        verdict: score >= 0 ? "correct" : "incorrect",
        detail: { mode: "score", score: round(score), correct: round(c), incorrect: round(ic) },
      };
    });
  }
}

function defaultVerdict(request: JudgeRequest, detail: Detail): JudgeResult {
  return request.kind === "compare" ? { id: request.id, verdict: 1, detail } : { id: request.id, verdict: "correct", detail };
}
