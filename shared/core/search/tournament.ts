/**
 * Knock-out bracket over candidate indices. Round r pairs the survivors in order (0 v 1, 2 v 3,
 * …); an odd one out gets a bye and moves on last. That gives exactly N−1 matches and
 * ceil(log2 N) rounds, and every match of a round is known at once, so a driver can batch a
 * whole round. A match between a defective and a flawless candidate is decided without a judge.
 */
import { z } from "zod";
import { DefectSchema, DetailSchema, type Defect, type Detail } from "./types.ts";

const Index = z.number().int().nonnegative();

export const MatchSchema = z.object({
  round: Index,
  first: Index,
  second: Index,
  /** null while the judge has not answered. */
  verdict: z.union([z.literal(1), z.literal(2)]).nullable(),
  reason: z.enum(["judge", "truncated", "malformed"]),
  detail: DetailSchema.nullable(),
});
export type Match = z.infer<typeof MatchSchema>;

export const BracketSchema = z.object({
  /** Defect of every candidate of the step, by candidate index (not only the entrants). */
  defects: z.array(DefectSchema.nullable()),
  /** Candidates that entered, in bracket order. */
  entrants: z.array(Index),
  /** Candidates still in, in bracket order, for the current round. */
  alive: z.array(Index),
  round: Index,
  matches: z.array(MatchSchema),
  winner: Index.nullable(),
});
export type Bracket = z.infer<typeof BracketSchema>;

export interface Outcome {
  first: number;
  second: number;
  verdict: 1 | 2;
  detail: Detail | null;
}

export function openBracket(entrants: readonly number[], defects: readonly (Defect | null)[]): Bracket {
  if (entrants.length === 0) throw new Error("a tournament needs at least one entrant");
  for (const e of entrants) {
    if (!Number.isInteger(e) || e < 0 || e >= defects.length) throw new Error(`entrant ${e} has no candidate`);
  }
  if (new Set(entrants).size !== entrants.length) throw new Error("a candidate cannot enter a tournament twice");
  return settle({ defects: [...defects], entrants: [...entrants], alive: [...entrants], round: 0, matches: [], winner: null });
}

/** Matches of the current round that wait for a judge. */
export function pendingMatches(b: Bracket): Match[] {
  return b.matches.filter((m) => m.round === b.round && m.verdict === null);
}

export function matchWinner(m: Match): number {
  if (m.verdict === null) throw new Error(`match c${m.first} v c${m.second} is undecided`);
  return m.verdict === 1 ? m.first : m.second;
}

/** Records the judge's verdict for every pending match of the round, then moves the bracket on. */
export function decide(b: Bracket, outcomes: readonly Outcome[]): Bracket {
  const pending = pendingMatches(b);
  const key = (first: number, second: number) => `${first}v${second}`;
  const byPair = new Map<string, Outcome>();
  for (const o of outcomes) {
    const k = key(o.first, o.second);
    if (byPair.has(k)) throw new Error(`two verdicts for match c${o.first} v c${o.second}`);
    byPair.set(k, o);
  }
  for (const k of byPair.keys()) {
    if (!pending.some((m) => key(m.first, m.second) === k)) throw new Error(`no pending match ${k}`);
  }
  const matches = b.matches.map((m) => {
    if (m.round !== b.round || m.verdict !== null) return m;
    const o = byPair.get(key(m.first, m.second));
    if (o === undefined) throw new Error(`no verdict for match c${m.first} v c${m.second}`);
    return { ...m, verdict: o.verdict, detail: o.detail };
  });
  return settle({ ...b, matches });
}

/** Plays every round that needs no judge, until a judge is needed or one candidate is left. */
function settle(start: Bracket): Bracket {
  let b = start;
  for (;;) {
    if (b.winner !== null) return b;
    if (b.alive.length === 1) return { ...b, winner: b.alive[0]! };
    let roundMatches = b.matches.filter((m) => m.round === b.round);
    if (roundMatches.length === 0) {
      roundMatches = pair(b);
      b = { ...b, matches: [...b.matches, ...roundMatches] };
    }
    if (roundMatches.some((m) => m.verdict === null)) return b;
    const next = roundMatches.map(matchWinner);
    if (b.alive.length % 2 === 1) next.push(b.alive[b.alive.length - 1]!);
    b = { ...b, alive: next, round: b.round + 1 };
  }
}

function pair(b: Bracket): Match[] {
  const out: Match[] = [];
  for (let k = 0; k + 1 < b.alive.length; k += 2) {
    const first = b.alive[k]!;
    const second = b.alive[k + 1]!;
    const d1 = b.defects[first] ?? null;
    const d2 = b.defects[second] ?? null;
    // Only a lopsided pair is a walkover; two defective candidates still go to the judge.
    if ((d1 === null) !== (d2 === null)) {
      out.push({ round: b.round, first, second, verdict: d1 === null ? 1 : 2, reason: (d1 ?? d2)!, detail: null });
    } else {
      out.push({ round: b.round, first, second, verdict: null, reason: "judge", detail: null });
    }
  }
  return out;
}
