import { describe, expect, it } from "vitest";
import { decide, matchWinner, openBracket, pendingMatches, type Bracket } from "../../shared/core/search/tournament.ts";
import type { Defect } from "../../shared/core/search/types.ts";

/** Plays a bracket to the end with a judge that prefers the higher strength. */
function play(b0: Bracket, strength: (i: number) => number): { b: Bracket; rounds: number[][][] } {
  let b = b0;
  const rounds: number[][][] = [];
  while (b.winner === null) {
    const pending = pendingMatches(b);
    expect(pending.length).toBeGreaterThan(0);
    rounds.push(pending.map((m) => [m.first, m.second]));
    b = decide(
      b,
      pending.map((m) => ({
        first: m.first,
        second: m.second,
        verdict: strength(m.second) > strength(m.first) ? 2 : 1,
        detail: null,
      })),
    );
  }
  return { b, rounds };
}

describe("bracket", () => {
  it("plays N-1 matches in ceil(log2 N) rounds for N = 1..8 and crowns the strongest", () => {
    for (let n = 1; n <= 8; n++) {
      const strengths = Array.from({ length: n }, (_, i) => (i * 3 + 1) % (n + 1));
      const { b, rounds } = play(openBracket([...Array(n).keys()], Array(n).fill(null)), (i) => strengths[i]!);
      expect(b.winner).toBe(strengths.indexOf(Math.max(...strengths)));
      expect(b.matches).toHaveLength(n - 1);
      expect(rounds).toHaveLength(Math.ceil(Math.log2(n)));
    }
  });

  it("plays only the given entrants, keeping their candidate indices", () => {
    const { b, rounds } = play(openBracket([1, 3, 4], Array(5).fill(null)), (i) => i);
    expect(rounds).toEqual([[[1, 3]], [[3, 4]]]);
    expect(b.winner).toBe(4);
    expect(b.entrants).toEqual([1, 3, 4]);
  });

  it("decides lopsided pairs without a judge and judges pairs of equals", () => {
    const defects: (Defect | null)[] = ["truncated", null, "malformed", "truncated"];
    const b = openBracket([0, 1, 2, 3], defects);
    expect(b.matches.filter((m) => m.round === 0)).toEqual([
      { round: 0, first: 0, second: 1, verdict: 2, reason: "truncated", detail: null },
      { round: 0, first: 2, second: 3, verdict: null, reason: "judge", detail: null },
    ]);
    const after = decide(b, [{ first: 2, second: 3, verdict: 1, detail: "I choose response 1" }]);
    // round 1: c1 (flawless) v c2 (malformed) needs no judge either
    expect(after.winner).toBe(1);
    expect(after.matches.at(-1)).toMatchObject({ round: 1, first: 1, second: 2, verdict: 1, reason: "malformed" });
    expect(after.matches.map(matchWinner)).toEqual([1, 2, 1]);
  });

  it("a single entrant wins at once", () => {
    expect(openBracket([2], [null, null, "truncated"]).winner).toBe(2);
  });

  it("refuses missing, extra or duplicate verdicts and bad entrants", () => {
    const b = openBracket([0, 1, 2, 3], Array(4).fill(null));
    expect(() => decide(b, [{ first: 0, second: 1, verdict: 1, detail: null }])).toThrow(/no verdict for match c2 v c3/);
    expect(() =>
      decide(b, [
        { first: 0, second: 1, verdict: 1, detail: null },
        { first: 0, second: 1, verdict: 2, detail: null },
        { first: 2, second: 3, verdict: 1, detail: null },
      ]),
    ).toThrow(/two verdicts/);
    expect(() => decide(b, [{ first: 0, second: 2, verdict: 1, detail: null }])).toThrow(/no pending match/);
    expect(() => openBracket([], [])).toThrow(/at least one/);
    expect(() => openBracket([0, 0], [null])).toThrow(/twice/);
    expect(() => openBracket([5], [null])).toThrow(/no candidate/);
  });

  it("never changes the bracket it is given", () => {
    const b = Object.freeze(openBracket([0, 1], [null, null]));
    const copy = structuredClone(b);
    decide(b, [{ first: 0, second: 1, verdict: 2, detail: null }]);
    expect(b).toEqual(copy);
  });
});
