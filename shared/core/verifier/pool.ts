/** Step scores → a candidate's score, and one step's score from the logits at its marker. */
import type { PoolRule } from "./template.ts";

/** P(good) of a step from the logits of the good and bad tokens at its marker (a softmax over the two). */
export function stepScore(goodLogit: number, badLogit: number): number {
  return 1 / (1 + Math.exp(badLogit - goodLogit));
}

/** The candidate's score in [0, 1]; a candidate without steps (empty text) scores 0, so it never wins. */
export function poolScores(scores: readonly number[], rule: PoolRule): number {
  if (scores.length === 0) return 0;
  if (rule === "min") return Math.min(...scores);
  if (rule === "last") return scores[scores.length - 1]!;
  return scores.reduce((s, x) => s + x, 0) / scores.length;
}
