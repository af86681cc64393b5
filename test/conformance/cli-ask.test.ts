/**
 * `stagebeam ask --model FIXTURE` on each published-layout fixture: a stage-level beam search runs
 * all four stages end to end (the random decoders write noise, so every candidate is recorded as
 * truncated at --max-stage-tokens) and exits 0.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import { FAMILIES, type Fixtures, makeFixtures } from "./fixtures.ts";

const IMAGE = path.resolve("apps/demo/sample/s42-000000.png");
let fixtures: Fixtures;

beforeAll(async () => {
  fixtures = await makeFixtures();
});
afterAll(() => {
  fixtures?.remove();
});

interface Candidate {
  tokens: number;
  truncated: boolean;
  defect?: string;
}
interface Trace {
  result: { steps: { label: string; candidates: Candidate[]; comparisons: unknown[] }[] };
}

describe.each(FAMILIES)("stagebeam ask on the %s fixture", (family) => {
  it("searches four stages with beam 2 and exits 0", async () => {
    const out = await runCli([
      "ask",
      "--model",
      fixtures.dir(family),
      "--image",
      IMAGE,
      "--question",
      "How many red objects?",
      "--strategy",
      "stage",
      "--beam",
      "2",
      "--max-stage-tokens",
      "8",
      "--json",
    ]);
    expect(out.code, out.stderr).toBe(0);
    const { steps } = (JSON.parse(out.stdout) as Trace).result;
    expect(steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
    for (const step of steps) {
      expect(step.candidates).toHaveLength(2);
      expect(step.comparisons).toHaveLength(1);
      for (const c of step.candidates) {
        // A candidate either closed its stage within 8 tokens or is recorded as cut off there.
        if (c.truncated) expect(c).toMatchObject({ tokens: 8, defect: "truncated" });
        else expect(c.tokens).toBeLessThanOrEqual(8);
      }
    }
  });
});
