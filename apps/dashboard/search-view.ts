/**
 * What the result viewer shows of a search, derived from its trace alone: the chosen text of
 * each stage, and per step every candidate with its check verdict and the earlier candidate
 * whose equal text it was merged with, and the knock-out as a tree
 * (the final at the root, the candidates at the leaves) with every verdict and the path the
 * winner took.
 */
import { STAGES, type Stage } from "../../shared/core/protocol/stages.ts";
import type { ComparisonTrace, Defect, Detail, SearchResult, StepTrace, VoteTrace } from "../../shared/core/search/types.ts";

export interface CandidateView {
  index: number;
  text: string;
  tokens: number;
  truncated: boolean;
  defect: Defect | null;
  /** The REASONING check's verdict, when the step ran one. */
  check: { verdict: "correct" | "incorrect"; detail: string | null } | null;
  /** The verifier's pooled score and its step scores, when a verifier scored the step. */
  score: { value: number; steps: number[] } | null;
  /** The earlier candidate of the step with the same text, whose check, score or matches it shared (merging); null for the first of a text. */
  sameAs: number | null;
  /** Entered the knock-out (a failed REASONING check keeps a candidate out). */
  entered: boolean;
  winner: boolean;
}

export type BracketNode =
  | { kind: "candidate"; candidate: number; onWinnerPath: boolean }
  | {
      kind: "match";
      round: number;
      first: number;
      second: number;
      verdict: 1 | 2;
      winner: number;
      /** `judge`, the defect that decided it without one, or merging: `equal` texts, a `repeat` of a judged pair. */
      reason: ComparisonTrace["reason"];
      detail: string | null;
      onWinnerPath: boolean;
      children: [BracketNode, BracketNode];
    };

export interface StepView {
  label: string;
  candidates: CandidateView[];
  /** The knock-out; null where the step chose without one (a verifier's ranking, a vote). */
  bracket: BracketNode | null;
  winner: number;
  /** The matches the winner won, round by round. */
  winnerPath: ComparisonTrace[];
  /** A vote's answers, the winning one first. */
  votes: VoteTrace[];
  /** Every candidate best first, where a verifier ranked them. */
  ranking: number[];
  /** What the strategy decided after the step and why (swires: whether it retraced). */
  decision: string | null;
}

export interface SearchView {
  stages: { stage: Stage; text: string | null }[];
  steps: StepView[];
}

/** A judge's detail in one line: `score 0.81 · forward 0.79 · swapped 0.83`, JSON for nested values. */
export function detailText(detail: Detail | null | undefined): string | null {
  if (detail === null || detail === undefined) return null;
  if (typeof detail !== "object" || Array.isArray(detail)) return JSON.stringify(detail);
  const parts = Object.entries(detail).map(([k, v]) => `${k} ${typeof v === "string" ? v : JSON.stringify(v)}`);
  return parts.length > 0 ? parts.join(" · ") : null;
}

/** The knock-out of a step as a tree; throws when the comparisons do not end in the step's winner. */
export function bracketOf(step: StepTrace): BracketNode {
  const current = new Map<number, BracketNode>();
  for (const e of step.entrants) current.set(e, { kind: "candidate", candidate: e, onWinnerPath: e === step.winner });
  for (const m of [...step.comparisons].sort((a, b) => a.round - b.round)) {
    const first = current.get(m.first);
    const second = current.get(m.second);
    if (first === undefined || second === undefined) {
      throw new Error(`step ${step.label}: match c${m.first} v c${m.second} of round ${m.round} has a candidate already out`);
    }
    current.delete(m.first);
    current.delete(m.second);
    current.set(m.winner, {
      kind: "match",
      round: m.round,
      first: m.first,
      second: m.second,
      verdict: m.verdict,
      winner: m.winner,
      reason: m.reason,
      detail: detailText(m.detail),
      onWinnerPath: m.winner === step.winner,
      children: [first, second],
    });
  }
  const root = current.get(step.winner);
  if (current.size !== 1 || root === undefined) {
    throw new Error(
      `step ${step.label}: the comparisons leave ${[...current.keys()].map((c) => `c${c}`).join(", ")} standing, not the winner c${step.winner} alone`,
    );
  }
  return root;
}

export function stepView(step: StepTrace): StepView {
  const entered = new Set(step.entrants);
  return {
    label: step.label,
    candidates: step.candidates.map((c, index) => {
      const check = step.checks.find((k) => k.candidate === index);
      const score = step.scores.find((k) => k.candidate === index);
      return {
        index,
        text: c.text,
        tokens: c.tokens,
        truncated: c.truncated,
        defect: c.defect,
        check: check ? { verdict: check.verdict, detail: detailText(check.detail) } : null,
        score: score ? { value: score.score, steps: score.steps } : null,
        sameAs: step.sameAs[index] !== undefined && step.sameAs[index] !== index ? step.sameAs[index] : null,
        entered: entered.has(index),
        winner: index === step.winner,
      };
    }),
    bracket: step.comparisons.length > 0 || step.entrants.length === 1 ? bracketOf(step) : null,
    winner: step.winner,
    winnerPath: step.comparisons.filter((m) => m.winner === step.winner).sort((a, b) => a.round - b.round),
    votes: step.votes,
    ranking: step.ranking,
    decision: detailText(step.decision),
  };
}

export function searchView(search: SearchResult): SearchView {
  return {
    stages: STAGES.map((stage) => ({ stage, text: search.stages[stage] ?? null })),
    steps: search.steps.map(stepView),
  };
}
