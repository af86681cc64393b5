/**
 * What each strategy searches over. A strategy is a sequence of steps, each "sample N
 * continuations of the accepted text with this stop rule, then knock them out with this judge
 * template"; the machine runs any step the same way, so a strategy only says which step comes
 * next given what has been accepted.
 */
import { z } from "zod";
import { closeTag, STAGES, type Stage } from "../protocol/stages.ts";
import type { SearchParams } from "./params.ts";
import { CompareTemplateSchema, StopSchema, type Strategy } from "./types.ts";

export const StepPlanSchema = z.object({
  /** Goes into ids and sample keys: a stage name, `answer`, or `s<n>`. */
  key: z.string().regex(/^[A-Za-z0-9_-]+$/),
  label: z.string(),
  stop: StopSchema,
  maxTokens: z.number().int().positive(),
  candidates: z.number().int().positive(),
  template: CompareTemplateSchema,
  /** Ask the reasoning check of every candidate before the tournament. */
  check: z.boolean(),
});
export type StepPlan = z.infer<typeof StepPlanSchema>;

export interface Progress {
  /** Accepted assistant text, the last winner included. */
  prefix: string;
  stepsDone: number;
  /** The last winner ended with the engine's end-of-sequence token. */
  lastFinished: boolean;
}

interface StrategyPlan {
  first(p: SearchParams): StepPlan;
  after(p: SearchParams, done: StepPlan, progress: Progress): StepPlan | null;
}

// A whole answer holds four stages.
const answerTokens = (p: SearchParams) => 4 * p.maxStageTokens;

const wholeAnswer = (p: SearchParams, candidates: number): StepPlan => ({
  key: "answer",
  label: "answer",
  stop: { kind: "end" },
  maxTokens: answerTokens(p),
  candidates,
  template: "all",
  check: false,
});

const stageStep = (p: SearchParams, stage: Stage): StepPlan => ({
  key: stage,
  label: stage,
  stop: { kind: "stage", stage },
  maxTokens: p.maxStageTokens,
  candidates: p.beam,
  template: stage,
  check: stage === "REASONING",
});

const sentenceStep = (p: SearchParams, n: number): StepPlan => ({
  key: `s${n}`,
  label: `sentence ${n}`,
  stop: { kind: "sentence" },
  maxTokens: p.maxStageTokens,
  candidates: p.beam,
  template: "sentence",
  check: false,
});

const PLANS: Record<Strategy, StrategyPlan> = {
  none: { first: (p) => wholeAnswer(p, 1), after: () => null },
  "best-of-n": { first: (p) => wholeAnswer(p, p.beam), after: () => null },
  sentence: {
    first: (p) => sentenceStep(p, 1),
    after: (p, _done, g) =>
      g.prefix.includes(closeTag("CONCLUSION")) || g.lastFinished || g.stepsDone >= p.maxSentenceSteps
        ? null
        : sentenceStep(p, g.stepsDone + 1),
  },
  stage: {
    first: (p) => stageStep(p, STAGES[0]),
    after: (p, done, g) => {
      // Past the model's end-of-sequence there is nothing left to search; the result is simply not well formed.
      if (g.lastFinished || done.stop.kind !== "stage") return null;
      const nextStage = STAGES[STAGES.indexOf(done.stop.stage) + 1];
      return nextStage === undefined ? null : stageStep(p, nextStage);
    },
  },
};

export function firstStep(p: SearchParams): StepPlan {
  return PLANS[p.strategy].first(p);
}

export function stepAfter(p: SearchParams, done: StepPlan, progress: Progress): StepPlan | null {
  return PLANS[p.strategy].after(p, done, progress);
}
