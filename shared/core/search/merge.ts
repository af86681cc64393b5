/**
 * Equal texts judged once. A step's candidates are grouped by what a judge or a verifier would
 * read of them: the text with its base (swires continues several), and whether it was cut short
 * or ended the answer. Every candidate stays in the trace; each names its group by the first
 * candidate of it (`sameAs`), and only those first candidates are checked or scored.
 */
import type { CandidateTrace } from "./types.ts";

/** Each candidate's first equal: its own index when it is the first of its text, or when merging is off. */
export function firstEquals(
  candidates: readonly Pick<CandidateTrace, "text" | "truncated" | "finished">[],
  baseOf: (i: number) => string,
  merge: boolean,
): number[] {
  if (!merge) return candidates.map((_, i) => i);
  const first = new Map<string, number>();
  return candidates.map((c, i) => {
    const key = JSON.stringify([baseOf(i), c.text, c.truncated, c.finished]);
    const seen = first.get(key);
    if (seen !== undefined) return seen;
    first.set(key, i);
    return i;
  });
}

/** The candidates a judge or verifier reads: the first of each text, in order. */
export const distinctOf = (sameAs: readonly number[]): number[] => sameAs.filter((s, i) => s === i);
