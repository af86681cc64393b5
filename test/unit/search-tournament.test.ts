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
      { round: 0, first: 0, second: 1, verdict: 2, reason: "truncated", detail: null, source: null },
      { round: 0, first: 2, second: 3, verdict: null, reason: "judge", detail: null, source: null },
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

describe("bracket over merged texts", () => {
  it("copies of one text meet without a judge, the earlier moving on", () => {
    const b = openBracket([0, 1, 2, 3], Array(4).fill(null), [0, 0, 0, 0]);
    expect(b.winner).toBe(0);
    expect(b.matches.map((m) => [m.first, m.second, m.reason, m.verdict])).toEqual([
      [0, 1, "equal", 1],
      [2, 3, "equal", 1],
      [0, 2, "equal", 1],
    ]);
  });

  it("asks a pair of texts once: A B B A, the reversed match takes the verdict flipped", () => {
    const b = openBracket([0, 1, 2, 3], Array(4).fill(null), [0, 1, 1, 0]);
    expect(pendingMatches(b).map((m) => [m.first, m.second])).toEqual([[0, 1]]);
    const after = decide(b, [{ first: 0, second: 1, verdict: 2, detail: "B" }]);
    // c0 v c1 → c1 (B); c2 v c3 is B v A → c2 (B); c1 v c2 are both B.
    expect(after.matches.map((m) => [m.first, m.second, m.reason, matchWinner(m), m.source])).toEqual([
      [0, 1, "judge", 1, null],
      [2, 3, "repeat", 2, [0, 1]],
      [1, 2, "equal", 1, null],
    ]);
    expect(after.winner).toBe(1);
  });

  it("takes an earlier round's verdict for a pair that meets again", () => {
    // A B C A: round 0 A v B (A wins) and C v A (C wins); round 1 A v C was decided by C v A.
    const b = openBracket([0, 1, 2, 3], Array(4).fill(null), [0, 1, 2, 0]);
    expect(pendingMatches(b)).toHaveLength(2);
    const after = decide(b, [
      { first: 0, second: 1, verdict: 1, detail: null },
      { first: 2, second: 3, verdict: 1, detail: null },
    ]);
    expect(after.matches.at(-1)).toMatchObject({ round: 1, first: 0, second: 2, reason: "repeat", verdict: 2, source: [2, 3] });
    expect(after.winner).toBe(2);
    // Eight candidates A B A C A B A C: round 1 meets A v A twice and round 2 A v A: only A v B and A v C are asked.
    const eight = openBracket([...Array(8).keys()], Array(8).fill(null), [0, 1, 0, 3, 0, 1, 0, 3]);
    expect(pendingMatches(eight).map((m) => [m.first, m.second])).toEqual([
      [0, 1],
      [2, 3],
    ]);
    const done = decide(eight, [
      { first: 0, second: 1, verdict: 1, detail: null },
      { first: 2, second: 3, verdict: 1, detail: null },
    ]);
    expect(done.winner).toBe(0);
    expect(done.matches.filter((m) => m.reason === "judge")).toHaveLength(2);
  });
});
