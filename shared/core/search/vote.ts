/**
 * Majority voting over whole answers: the most frequent normalised CONCLUSION wins. Ties go to
 * the answer whose voters have the higher mean token log-probability, then to the answer first
 * written. `vote-weighted` counts each vote as the candidate's geometric-mean token probability,
 * exp(mean token log-prob), so confident answers weigh more. Only flawless answers vote while
 * there are any; the answer's representative is its most confident voter.
 */
import { normalizeAnswer } from "../eval/stats.ts";
import { parseStructured } from "../protocol/stages.ts";
import type { Defect, VoteTrace } from "./types.ts";

export interface Ballot {
  /** The whole answer. */
  text: string;
  tokens: number;
  logProb: number | null;
  defect: Defect | null;
}

/** Mean token log-probability, or null when unknown. */
const meanLogProb = (b: Ballot): number | null => (b.logProb === null || b.tokens === 0 ? null : b.logProb / b.tokens);

/** Higher first, unknown last. */
const byCertainty = (x: number | null, y: number | null): number => (y ?? -Infinity) - (x ?? -Infinity) || 0;

export function tallyVotes(ballots: readonly Ballot[], weighted: boolean): { votes: VoteTrace[]; winner: number } {
  const answers = ballots.map((b) => normalizeAnswer(parseStructured(b.text).answer));
  const flawless = ballots.some((b, i) => b.defect === null && answers[i] !== "");
  const voters = ballots.map((_, i) => i).filter((i) => answers[i] !== "" && (!flawless || ballots[i]!.defect === null));
  const mostCertain = (indices: readonly number[]) =>
    [...indices].sort((a, b) => byCertainty(meanLogProb(ballots[a]!), meanLogProb(ballots[b]!)) || a - b)[0]!;
  if (voters.length === 0) {
    const clean = ballots.map((_, i) => i).filter((i) => ballots[i]!.defect === null);
    return { votes: [], winner: mostCertain(clean.length > 0 ? clean : ballots.map((_, i) => i)) };
  }
  const groups = new Map<string, number[]>();
  for (const i of voters) groups.set(answers[i]!, [...(groups.get(answers[i]!) ?? []), i]);
  const votes: VoteTrace[] = [...groups].map(([answer, candidates]) => {
    const means = candidates.map((i) => meanLogProb(ballots[i]!)).filter((m) => m !== null);
    return {
      answer,
      candidates,
      weight: weighted ? candidates.reduce((s, i) => s + Math.exp(meanLogProb(ballots[i]!) ?? -Infinity), 0) : candidates.length,
      meanLogProb: means.length === 0 ? null : means.reduce((s, m) => s + m, 0) / means.length,
    };
  });
  votes.sort((a, b) => b.weight - a.weight || byCertainty(a.meanLogProb, b.meanLogProb) || a.candidates[0]! - b.candidates[0]!);
  return { votes, winner: mostCertain(votes[0]!.candidates) };
}
