/**
 * Knock-out bracket over candidate indices. Round r pairs the survivors in order (0 v 1, 2 v 3,
 * …); an odd one out gets a bye and moves on last. That gives exactly N−1 matches and
 * ceil(log2 N) rounds, and every match of a round is known at once, so a driver can batch a
 * whole round. A match between a defective and a flawless candidate is decided without a judge.
 *
 * Equal texts are judged once (`same`: each candidate's first equal, see merge.ts): a match
 * between two copies of one text is decided without a judge (`equal`: the earlier copy moves
 * on, as the score judge's tie rule would), and a pair of texts the judge has already decided
 * in this step takes that verdict again (`repeat`, flipped when the pair meets the other way
 * round), so the judge sees each unordered pair of distinct texts at most once. The bracket
 * stays the one over all N sampled candidates, so a text's multiplicity weighs as it did (each
 * copy is an entrant) and a deterministic judge gives the very winner it gave without merging.
 */
import { z } from "zod";
import { DefectSchema, DetailSchema, type Defect, type Detail } from "./types.ts";

const Index = z.number().int().nonnegative();

/** `judge`: a judge call; `truncated`/`malformed`: a walkover; `equal`/`repeat`: merged, no call. */
export const MATCH_REASONS = ["judge", "truncated", "malformed", "equal", "repeat"] as const;

export const MatchSchema = z.object({
  round: Index,
  first: Index,
  second: Index,
  /** null while the judge has not answered. */
  verdict: z.union([z.literal(1), z.literal(2)]).nullable(),
  reason: z.enum(MATCH_REASONS),
  detail: DetailSchema.nullable(),
  /** For a `repeat`: the judged match whose verdict it takes. */
  source: z.tuple([Index, Index]).nullable().default(null),
});
export type Match = z.infer<typeof MatchSchema>;

export const BracketSchema = z.object({
  /** Defect of every candidate of the step, by candidate index (not only the entrants). */
  defects: z.array(DefectSchema.nullable()),
  /** Each candidate's first equal (its own index when it is the first, or when merging is off). */
  same: z.array(Index),
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

export function openBracket(
  entrants: readonly number[],
  defects: readonly (Defect | null)[],
  same: readonly number[] = defects.map((_, i) => i),
): Bracket {
  if (entrants.length === 0) throw new Error("a tournament needs at least one entrant");
  if (same.length !== defects.length) throw new Error("every candidate needs its first equal");
  for (const e of entrants) {
    if (!Number.isInteger(e) || e < 0 || e >= defects.length) throw new Error(`entrant ${e} has no candidate`);
  }
  if (new Set(entrants).size !== entrants.length) throw new Error("a candidate cannot enter a tournament twice");
  return settle({
    defects: [...defects],
    same: [...same],
    entrants: [...entrants],
    alive: [...entrants],
    round: 0,
    matches: [],
    winner: null,
  });
}

/** Unordered pair of texts, by their first copies. */
const textPair = (b: Bracket, m: { first: number; second: number }): string => {
  const x = b.same[m.first]!;
  const y = b.same[m.second]!;
  return x < y ? `${x}v${y}` : `${y}v${x}`;
};

/** The verdict of `m` when it plays the pair of `source`'s texts in the same or the other order. */
const carried = (b: Bracket, m: { first: number }, source: Match): 1 | 2 => {
  const sameOrder = b.same[m.first] === b.same[source.first];
  return sameOrder ? source.verdict! : source.verdict === 1 ? 2 : 1;
};

/**
 * Matches of the current round that wait for a judge: one per pair of texts; a match of the
 * round between the same two texts takes its verdict once it has come.
 */
export function pendingMatches(b: Bracket): Match[] {
  const seen = new Set<string>();
  return b.matches.filter((m) => {
    if (m.round !== b.round || m.verdict !== null) return false;
    const pair = textPair(b, m);
    if (seen.has(pair)) return false;
    seen.add(pair);
    return true;
  });
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
  const judged = b.matches.map((m) => {
    if (m.round !== b.round || m.verdict !== null || !pending.includes(m)) return m;
    const o = byPair.get(key(m.first, m.second));
    if (o === undefined) throw new Error(`no verdict for match c${m.first} v c${m.second}`);
    return { ...m, verdict: o.verdict, detail: o.detail };
  });
  return settle({ ...b, matches: repeatVerdicts(b, judged) });
}

/** Undecided matches of a pair of texts the judge has decided in this step take that verdict. */
function repeatVerdicts(b: Bracket, matches: readonly Match[]): Match[] {
  const judged = new Map<string, Match>();
  for (const m of matches) if (m.reason === "judge" && m.verdict !== null) judged.set(textPair(b, m), m);
  return matches.map((m) => {
    const source = m.verdict === null ? judged.get(textPair(b, m)) : undefined;
    if (source === undefined) return m;
    return { ...m, verdict: carried(b, m, source), reason: "repeat", source: [source.first, source.second] };
  });
}

/** Plays every round that needs no judge, until a judge is needed or one candidate is left. */
function settle(start: Bracket): Bracket {
  let b = start;
  for (;;) {
    if (b.winner !== null) return b;
    if (b.alive.length === 1) return { ...b, winner: b.alive[0]! };
    let roundMatches = b.matches.filter((m) => m.round === b.round);
    if (roundMatches.length === 0) {
      const matches = repeatVerdicts(b, [...b.matches, ...pair(b)]);
      b = { ...b, matches };
      roundMatches = matches.filter((m) => m.round === b.round);
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
    const match = { round: b.round, first, second, detail: null, source: null };
    // Only a lopsided pair is a walkover; two defective candidates still go to the judge.
    if ((d1 === null) !== (d2 === null)) {
      out.push({ ...match, verdict: d1 === null ? 1 : 2, reason: (d1 ?? d2)! });
    } else if (b.same[first] === b.same[second]) {
      out.push({ ...match, verdict: 1, reason: "equal" });
    } else {
      out.push({ ...match, verdict: null, reason: "judge" });
    }
  }
  return out;
}
