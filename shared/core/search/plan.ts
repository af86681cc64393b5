/** A step's plan and what a strategy learns when a step is done: the vocabulary shared by the strategies. */
import { z } from "zod";
import type { Stage } from "../protocol/stages.ts";
import type { SearchParams } from "./params.ts";
import { CompareTemplateSchema, DefectSchema, StopSchema, type Defect, type Population, type StepTrace } from "./types.ts";

/**
 * `judge`: the pairwise self-judge's knock-out (with the REASONING check when the plan asks);
 * `verifier`: one batched pass of pointwise scores; `vote`/`vote-weighted`: the most frequent
 * CONCLUSION, no judge at all.
 */
export const SELECTIONS = ["judge", "verifier", "vote", "vote-weighted"] as const;
export type Selection = (typeof SELECTIONS)[number];

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
  select: z.enum(SELECTIONS),
  /** The strategy reads every candidate's score later (swires' reasoning pool): score even a step whose candidates all agree. */
  needsScores: z.boolean().default(false),
});
export type StepPlan = z.infer<typeof StepPlanSchema>;

/** A candidate kept for later by a strategy that looks further back than the last step (swires' reasonings). */
export const PoolEntrySchema = z.object({
  /** Its base text and its own, together. */
  text: z.string(),
  score: z.number(),
  defect: DefectSchema.nullable(),
  finished: z.boolean(),
});
export type PoolEntry = z.infer<typeof PoolEntrySchema>;

/** A candidate of the step just done, as the strategy sees it. */
export interface Ranked {
  /** Its base text and its own, together. */
  text: string;
  /** The verifier's score, or null when the step was not verifier-scored. */
  score: number | null;
  defect: PoolEntry["defect"];
  finished: boolean;
}

export interface Progress {
  /** Accepted assistant text, the last winner included. */
  prefix: string;
  stepsDone: number;
  /** The last winner ended with the engine's end-of-sequence token. */
  lastFinished: boolean;
  /** The step's candidates best first, where the step ranked them all; else the winner alone. */
  ranked: readonly Ranked[];
  /** The scoring verifier's calibrated population of scores, when it reported one. */
  population: Population | null;
  pool: readonly PoolEntry[];
  /** Every step done so far, this one included. */
  trace: readonly StepTrace[];
}

/** The next step: its plan, the texts its candidates continue, and what the strategy keeps for later. */
export interface NextStep {
  plan: StepPlan;
  bases: string[];
  pool: PoolEntry[];
  /** Why, for the trace of the step just done (swires' retrace test). */
  decision?: Record<string, number | boolean | string>;
}

/** A stage step; swires names its retraced steps apart (`CAPTION-r1`), so their ids and sample keys are new. */
export const stageStep = (p: SearchParams, stage: Stage, candidates: number, select: Selection, retrace = 0): StepPlan => ({
  key: retrace === 0 ? stage : `${stage}-r${retrace}`,
  label: retrace === 0 ? stage : `${stage} (retrace ${retrace})`,
  stop: { kind: "stage", stage },
  maxTokens: p.maxStageTokens,
  candidates,
  template: stage,
  // The REASONING check belongs to the pairwise self-judge; a verifier scores every candidate in one pass.
  check: stage === "REASONING" && select === "judge",
  select,
  needsScores: false,
});

/** Indices best first: flawless before defective, then the higher score, then the lower index. */
export function rankByScore(items: readonly { score: number | null; defect: Defect | null }[]): number[] {
  const score = (i: number) => items[i]!.score ?? -Infinity;
  return items
    .map((_, i) => i)
    .sort((a, b) => Number(items[a]!.defect !== null) - Number(items[b]!.defect !== null) || score(b) - score(a) || a - b);
}
