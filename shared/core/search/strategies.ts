/**
 * What each strategy searches over. A strategy is a sequence of steps, each "sample N
 * continuations of each base text with this stop rule, then pick among them by this rule (a
 * knock-out with this judge template, the verifier's scores, or a vote)"; the machine runs any
 * step the same way, so a strategy only says which step comes next, from which base texts,
 * given what the last step ranked.
 */
import { closeTag, STAGES } from "../protocol/stages.ts";
import type { SearchParams } from "./params.ts";
import { stageStep, type NextStep, type Progress, type Selection, type StepPlan } from "./plan.ts";
import { swiresAfter, swiresFirst } from "./swires.ts";
import type { Strategy } from "./types.ts";

export { StepPlanSchema, PoolEntrySchema, type StepPlan, type PoolEntry, type Progress, type NextStep } from "./plan.ts";

interface StrategyPlan {
  first(p: SearchParams): StepPlan;
  after(p: SearchParams, done: StepPlan, progress: Progress): NextStep | null;
}

/** A step that continues the accepted text alone. */
const linear = (plan: StepPlan | null, g: Progress): NextStep | null =>
  plan === null ? null : { plan, bases: [g.prefix], pool: [] };

const pick = (p: SearchParams): Selection => (p.verifier === true ? "verifier" : "judge");

// A whole answer holds four stages.
const answerTokens = (p: SearchParams) => 4 * p.maxStageTokens;

const wholeAnswer = (p: SearchParams, candidates: number, select: Selection): StepPlan => ({
  key: "answer",
  label: "answer",
  stop: { kind: "end" },
  maxTokens: answerTokens(p),
  candidates,
  template: "all",
  check: false,
  select,
  needsScores: false,
});

const sentenceStep = (p: SearchParams, n: number): StepPlan => ({
  key: `s${n}`,
  label: `sentence ${n}`,
  stop: { kind: "sentence" },
  maxTokens: p.maxStageTokens,
  candidates: p.beam,
  template: "sentence",
  check: false,
  select: pick(p),
  needsScores: false,
});

const oneAnswer: StrategyPlan["after"] = () => null;

const PLANS: Record<Strategy, StrategyPlan> = {
  none: { first: (p) => wholeAnswer(p, 1, "judge"), after: oneAnswer },
  greedy: { first: (p) => wholeAnswer(p, 1, "judge"), after: oneAnswer },
  "best-of-n": { first: (p) => wholeAnswer(p, p.beam, pick(p)), after: oneAnswer },
  vote: { first: (p) => wholeAnswer(p, p.beam, "vote"), after: oneAnswer },
  "vote-weighted": { first: (p) => wholeAnswer(p, p.beam, "vote-weighted"), after: oneAnswer },
  sentence: {
    first: (p) => sentenceStep(p, 1),
    after: (p, _done, g) =>
      linear(
        g.prefix.includes(closeTag("CONCLUSION")) || g.lastFinished || g.stepsDone >= p.maxSentenceSteps
          ? null
          : sentenceStep(p, g.stepsDone + 1),
        g,
      ),
  },
  stage: {
    first: (p) => stageStep(p, STAGES[0], p.beam, pick(p)),
    after: (p, done, g) => {
      // Past the model's end-of-sequence there is nothing left to search; the result is simply not well formed.
      if (g.lastFinished || done.stop.kind !== "stage") return null;
      const nextStage = STAGES[STAGES.indexOf(done.stop.stage) + 1];
      return linear(nextStage === undefined ? null : stageStep(p, nextStage, p.beam, pick(p)), g);
    },
  },
  swires: { first: swiresFirst, after: swiresAfter },
};

export function firstStep(p: SearchParams): StepPlan {
  return PLANS[p.strategy].first(p);
}

export function stepAfter(p: SearchParams, done: StepPlan, progress: Progress): NextStep | null {
  return PLANS[p.strategy].after(p, done, progress);
}
