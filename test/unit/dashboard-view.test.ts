/** The dashboard's pure parts: the search trace as a view (knock-out trees), HTML escaping, the token check, run states. */
import type { Request, Response } from "express";
import { describe, expect, it } from "vitest";
import { requireToken } from "../../apps/dashboard/actions.ts";
import { escapeHtml, href, html } from "../../apps/dashboard/html.ts";
import { runState } from "../../apps/dashboard/run-summary.ts";
import { bracketOf, detailText, searchView, type BracketNode } from "../../apps/dashboard/search-view.ts";
import { runSearch } from "../../shared/core/search/index.ts";
import type { ComparisonTrace, StepTrace } from "../../shared/core/search/types.ts";
import type { RunStatus } from "../../workers/fleet/ops/index.ts";
import { createScriptedHost } from "../support/scripted-host.ts";

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]);

const candidate = (text: string) => ({
  id: text,
  sampleKey: text,
  text,
  tokens: 3,
  truncated: false,
  finished: false,
  defect: null,
  logProb: null,
  detail: null,
});

const match = (round: number, first: number, second: number, winner: number, reason: ComparisonTrace["reason"] = "judge") => ({
  id: reason === "judge" ? `m${round}-${first}` : null,
  round,
  first,
  second,
  verdict: (winner === first ? 1 : 2) as 1 | 2,
  winner,
  reason,
  detail: reason === "judge" ? { mode: "score", score: 0.4 } : null,
});

/** Five candidates, c1 kept out by the check: 0 v 2 and 3 v 4 in round 0, then 2 v 3 in round 1. */
const STEP: StepTrace = {
  label: "REASONING",
  candidates: ["a", "b", "c", "d", "e"].map(candidate),
  replaced: [],
  sameAs: [],
  checks: [0, 1, 2, 3, 4].map((i) => ({ id: `k${i}`, candidate: i, verdict: i === 1 ? "incorrect" : "correct", detail: null })),
  entrants: [0, 2, 3, 4],
  comparisons: [match(0, 0, 2, 2), match(0, 3, 4, 3, "truncated"), match(1, 2, 3, 3)],
  scores: [],
  votes: [],
  ranking: [],
  decision: null,
  winner: 3,
};

const shape = (n: BracketNode): unknown =>
  n.kind === "candidate"
    ? `c${n.candidate}${n.onWinnerPath ? "*" : ""}`
    : [`c${n.first} v c${n.second} → c${n.winner}${n.onWinnerPath ? "*" : ""}`, ...n.children.map(shape)];

function leaves(n: BracketNode): number[] {
  return n.kind === "candidate" ? [n.candidate] : n.children.flatMap(leaves);
}

function matchCount(n: BracketNode): number {
  return n.kind === "candidate" ? 0 : 1 + n.children.map(matchCount).reduce((a, b) => a + b, 0);
}

describe("the search view", () => {
  it("turns a step's knock-out into a tree with the final at the root and marks the winner's path", () => {
    expect(shape(bracketOf(STEP))).toEqual(["c2 v c3 → c3*", ["c0 v c2 → c2", "c0", "c2"], ["c3 v c4 → c3*", "c3*", "c4"]]);
    const root = bracketOf(STEP);
    expect(root).toMatchObject({ kind: "match", verdict: 2, reason: "judge", detail: "mode score · score 0.4" });
  });

  it("lists every candidate with its check, whether it entered, and the matches its winner won", () => {
    const { candidates, winnerPath } = searchView({
      text: "",
      stages: { SUMMARY: "s" },
      answer: null,
      wellFormed: false,
      steps: [STEP],
      counts: { candidates: 5, distinct: 5, comparisons: 2, checks: 5, verifications: 0, saved: 0, generatedTokens: 15 },
    }).steps[0]!;
    expect(candidates.map((c) => [c.index, c.entered, c.winner, c.check?.verdict])).toEqual([
      [0, true, false, "correct"],
      [1, false, false, "incorrect"],
      [2, true, false, "correct"],
      [3, true, true, "correct"],
      [4, true, false, "correct"],
    ]);
    expect(winnerPath.map((m) => [m.round, m.first, m.second])).toEqual([
      [0, 3, 4],
      [1, 2, 3],
    ]);
  });

  it("gives each of the four stages its chosen text, null where the search chose none", () => {
    const view = searchView({
      text: "",
      stages: { SUMMARY: "s", CAPTION: "c" },
      answer: null,
      wellFormed: false,
      steps: [],
      counts: { candidates: 0, distinct: 0, comparisons: 0, checks: 0, verifications: 0, saved: 0, generatedTokens: 0 },
    });
    expect(view.stages).toEqual([
      { stage: "SUMMARY", text: "s" },
      { stage: "CAPTION", text: "c" },
      { stage: "REASONING", text: null },
      { stage: "CONCLUSION", text: null },
    ]);
  });

  it("a lone entrant is its own tree", () => {
    expect(bracketOf({ ...STEP, entrants: [4], comparisons: [], winner: 4 })).toEqual({
      kind: "candidate",
      candidate: 4,
      onWinnerPath: true,
    });
  });

  it("refuses comparisons that do not form a knock-out ending in the winner", () => {
    expect(() => bracketOf({ ...STEP, winner: 2 })).toThrow(
      "step REASONING: the comparisons leave c3 standing, not the winner c2 alone",
    );
    expect(() => bracketOf({ ...STEP, comparisons: [...STEP.comparisons, match(2, 0, 3, 3)] })).toThrow(
      "step REASONING: match c0 v c3 of round 2 has a candidate already out",
    );
  });

  it.each([2, 3, 5, 8])("holds every entrant and every comparison of a real search with beam %i", async (beam) => {
    const open = await createScriptedHost().open({ id: "i", image: PNG, question: "How many?" });
    const result = await runSearch({ itemId: "i", strategy: "stage", beam, seed: 4 }, open);
    for (const step of searchView(result).steps) {
      const trace = result.steps.find((s) => s.label === step.label)!;
      const bracket = step.bracket!;
      expect(leaves(bracket).sort()).toEqual([...trace.entrants].sort());
      expect(matchCount(bracket)).toBe(trace.comparisons.length);
      expect(bracket.kind === "match" ? bracket.winner : bracket.candidate).toBe(trace.winner);
    }
  });

  it("shows a verifier's scores and ranking where a step had no knock-out", async () => {
    const open = await createScriptedHost().open({ id: "i", image: PNG, question: "How many?" });
    const score = (id: string) => ((id.length * 7) % 10) / 10;
    const result = await runSearch(
      { itemId: "i", strategy: "stage", beam: 3, seed: 4, verifier: true },
      {
        ...open,
        verify: async (requests) => requests.map((r) => ({ id: r.id, score: score(r.id), steps: [score(r.id)] })),
      },
    );
    for (const step of searchView(result).steps) {
      const trace = result.steps.find((s) => s.label === step.label)!;
      expect(step.bracket).toBeNull();
      expect(step.ranking).toEqual(trace.ranking);
      expect(step.ranking[0]).toBe(trace.winner);
      expect(step.candidates.map((c) => c.score?.value)).toEqual(
        trace.candidates.map((_, i) => trace.scores.find((x) => x.candidate === i)!.score),
      );
    }
  });

  it("shows which candidates were merged and the matches merging decided without a judge", async () => {
    // Candidates A B A B at every stage: c2 and c3 repeat c0 and c1.
    const result = await runSearch(
      { itemId: "i", strategy: "stage", beam: 4, seed: 4 },
      {
        generate: async (requests) =>
          requests.map((r) => {
            const stage = r.stop.kind === "stage" ? r.stop.stage : "SUMMARY";
            const text = `<${stage}>${Number(r.id.slice(-1)) % 2 === 0 ? "A" : "B"}</${stage}>`;
            return { id: r.id, text, tokens: 3, truncated: false };
          }),
        judge: async (requests) =>
          requests.map((r) =>
            r.kind === "compare" ? { id: r.id, verdict: 2 as const } : { id: r.id, verdict: "correct" as const },
          ),
      },
    );
    const step = searchView(result).steps[0]!;
    expect(step.candidates.map((c) => c.sameAs)).toEqual([null, null, 0, 1]);
    expect(shape(step.bracket!)).toEqual(["c1 v c3 → c1*", ["c0 v c1 → c1*", "c0", "c1*"], ["c2 v c3 → c3", "c2", "c3"]]);
    const root = step.bracket as Extract<BracketNode, { kind: "match" }>;
    expect([root.reason, ...root.children.map((c) => (c.kind === "match" ? c.reason : null))]).toEqual([
      "equal",
      "judge",
      "repeat",
    ]);
    // Per stage a repeat and an equal match; REASONING checks A and B once each instead of four times.
    expect(result.counts).toMatchObject({ candidates: 16, distinct: 8, comparisons: 4, checks: 2, saved: 4 * 2 + 2 });
  });

  it("writes a judge's detail on one line", () => {
    expect(detailText({ mode: "score", score: 0.81, forward: 0.79 })).toBe("mode score · score 0.81 · forward 0.79");
    expect(detailText({ parsed: false, fallback: { a: 1 } })).toBe('parsed false · fallback {"a":1}');
    expect(detailText(null)).toBeNull();
    expect(detailText("raw")).toBe('"raw"');
  });
});

describe("html", () => {
  it("escapes every interpolated value, keeps nested html, drops null, undefined and false", () => {
    const id = `<img src=x onerror="alert('x')">&`;
    expect(escapeHtml(id)).toBe("&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;");
    expect(html`<td title="${id}">${id}</td>`.text).toBe(`<td title="${escapeHtml(id)}">${escapeHtml(id)}</td>`);
    expect(html`<ul>${["<a>", html`<li>ok</li>`]}${null}${undefined}${false}${0}</ul>`.text).toBe(
      "<ul>&lt;a&gt;<li>ok</li>0</ul>",
    );
    expect(href("runs", "a b", "items", "x/y")).toBe("/runs/a%20b/items/x%2Fy");
  });
});

describe("the action token", () => {
  function call(token: string | undefined, authorization?: string) {
    const out = { status: 200, body: undefined as unknown, next: false };
    const res = {
      status(s: number) {
        out.status = s;
        return res;
      },
      set: () => res,
      json(b: unknown) {
        out.body = b;
        return res;
      },
    };
    const req = { get: (h: string) => (h === "authorization" ? authorization : undefined) };
    requireToken(token)(req as unknown as Request, res as unknown as Response, () => {
      out.next = true;
    });
    return out;
  }
  const TOKEN = "a-token-of-enough-length";

  it("passes only the right bearer token, refuses all without a configured one", () => {
    expect(call(TOKEN, `Bearer ${TOKEN}`)).toMatchObject({ status: 200, next: true });
    expect(call(TOKEN, `Bearer ${TOKEN}x`)).toMatchObject({ status: 401, next: false });
    expect(call(TOKEN, "Bearer short")).toMatchObject({ status: 401, next: false });
    expect(call(TOKEN, TOKEN)).toMatchObject({ status: 401, next: false });
    expect(call(TOKEN)).toMatchObject({ status: 401, next: false });
    expect(call(undefined, `Bearer ${TOKEN}`)).toMatchObject({ status: 403, next: false });
    expect(JSON.stringify(call(TOKEN, "Bearer wrong").body)).not.toContain(TOKEN);
  });
});

describe("run states", () => {
  const status = (items: number, finished: number, done: boolean, failed = 0, state?: string, feeder: string | null = null) =>
    ({
      counts: { items, failed },
      finished,
      done,
      meta: state === undefined ? null : { state },
      manifest: null,
      feeder,
    }) as unknown as RunStatus;
  it("names a run as status does, telling a finished run with failures apart", () => {
    expect(
      [
        status(3, 3, true, 0, "completed"),
        status(3, 3, true, 3, "completed"),
        status(3, 1, true, 0, "cancelled"),
        status(3, 0, true, 3, "failed"),
        status(3, 1, false, 0, "in_progress"),
        status(3, 0, false, 0, "validating"),
      ].map(runState),
    ).toEqual(["completed", "completed with failures", "cancelled", "failed", "in progress", "validating"]);
  });
  it("says a run's submit stopped before the end of its manifest, as status does, until the run is over", () => {
    expect(
      [
        status(200, 40, false, 0, "in_progress", "stopped"),
        status(200, 0, false, 0, "validating", "stopped"),
        status(200, 40, true, 0, "cancelled", "stopped"),
        status(200, 40, false, 0, "in_progress", "feeding"),
      ].map(runState),
    ).toEqual(["submit stopped", "submit stopped", "cancelled", "in progress"]);
  });
  it("falls back to the counts for a run without a recorded state", () => {
    expect(
      [status(3, 3, true), status(3, 3, true, 1), status(3, 1, false), status(3, 0, false), status(0, 0, false)].map(runState),
    ).toEqual(["completed", "completed with failures", "in progress", "queued", "empty"]);
  });
});
