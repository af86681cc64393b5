/** Candidates that differ: resampling a candidate that equals an earlier one, and per-stage temperatures. */
import { describe, expect, it } from "vitest";
import { closeTag, openTag } from "../../shared/core/protocol/stages.ts";
import {
  GenerateRequestSchema,
  runSearch,
  type GenerateRequest,
  type SearchExecutor,
  type SearchParamsInput,
} from "../../shared/core/search/index.ts";

/** Every first draw of a stage writes the same text; a resample writes `fresh(req)`. */
function scripted(fresh: (req: GenerateRequest) => string) {
  const generated: GenerateRequest[] = [];
  const executor: SearchExecutor = {
    generate: async (requests) =>
      requests.map((r) => {
        generated.push(r);
        const stage = r.stop.kind === "stage" ? r.stop.stage : "SUMMARY";
        const body = /r\d+$/.test(r.sampleKey) ? fresh(r) : "same";
        const text = `${openTag(stage)}${body}${closeTag(stage)}`;
        return { id: r.id, text, tokens: 2, truncated: false };
      }),
    judge: async (requests) =>
      requests.map((r) => (r.kind === "compare" ? { id: r.id, verdict: 1 as const } : { id: r.id, verdict: "correct" as const })),
    verify: async (requests) => requests.map((r) => ({ id: r.id, score: 0.5, steps: [0.5] })),
  };
  return { executor, generated };
}

const stage4 = (extra: Partial<SearchParamsInput>): SearchParamsInput => ({
  itemId: "d",
  strategy: "stage",
  beam: 4,
  seed: 3,
  ...extra,
});

describe("candidates that differ", () => {
  it("resamples the candidates that equal an earlier one, under new ids and sample keys, and keeps what they replaced", async () => {
    const { executor, generated } = scripted((r) => `fresh ${r.sampleKey}`);
    const result = await runSearch(stage4({ resample: 2 }), executor);
    const caption = result.steps.find((s) => s.label === "CAPTION")!;
    expect(generated.filter((r) => r.id.startsWith("d:CAPTION:")).map((r) => [r.id, r.sampleKey])).toEqual([
      ["d:CAPTION:c0", "3/d/CAPTION/c0"],
      ["d:CAPTION:c1", "3/d/CAPTION/c1"],
      ["d:CAPTION:c2", "3/d/CAPTION/c2"],
      ["d:CAPTION:c3", "3/d/CAPTION/c3"],
      ["d:CAPTION:c1r1", "3/d/CAPTION/c1r1"],
      ["d:CAPTION:c2r1", "3/d/CAPTION/c2r1"],
      ["d:CAPTION:c3r1", "3/d/CAPTION/c3r1"],
    ]);
    // One round made them all differ, so no second round.
    expect(new Set(caption.candidates.map((c) => c.text)).size).toBe(4);
    expect(caption.candidates.map((c) => c.id)).toEqual(["d:CAPTION:c0", "d:CAPTION:c1r1", "d:CAPTION:c2r1", "d:CAPTION:c3r1"]);
    expect(caption.replaced.map((c) => c.id)).toEqual(["d:CAPTION:c1", "d:CAPTION:c2", "d:CAPTION:c3"]);
    expect(result.counts).toMatchObject({ candidates: 4 * 7, distinct: 4 * 4, generatedTokens: 4 * 7 * 2 });
    for (const r of generated) expect(GenerateRequestSchema.parse(r)).toEqual(r);
  });

  it("stops after `resample` rounds when the resamples keep repeating, and judges what is left once", async () => {
    const { executor, generated } = scripted(() => "same");
    const result = await runSearch(stage4({ resample: 2 }), executor);
    const summary = result.steps[0]!;
    expect(summary.replaced).toHaveLength(6);
    expect(summary.candidates.map((c) => c.id)).toEqual(["d:SUMMARY:c0", "d:SUMMARY:c1r2", "d:SUMMARY:c2r2", "d:SUMMARY:c3r2"]);
    expect(summary.sameAs).toEqual([0, 0, 0, 0]);
    expect(generated).toHaveLength(4 * (4 + 3 + 3));
    expect(result.counts.comparisons).toBe(0);
  });

  it("resamples only the stages named in resampleStages", async () => {
    const { executor, generated } = scripted((r) => `fresh ${r.sampleKey}`);
    const result = await runSearch(stage4({ resample: 2, resampleStages: ["CAPTION"] }), executor);
    expect(result.steps.map((s) => s.replaced.length)).toEqual([0, 3, 0, 0]);
    expect(generated.filter((r) => /r\d$/.test(r.id)).every((r) => r.id.startsWith("d:CAPTION:"))).toBe(true);
  });

  it("does not resample without the option, nor for a vote, which counts repeats", async () => {
    const plain = scripted(() => "other");
    await runSearch(stage4({}), plain.executor);
    expect(plain.generated).toHaveLength(16);
    const vote = scripted(() => "other");
    const voted = await runSearch({ itemId: "d", strategy: "vote", beam: 4, seed: 3, resample: 3 }, vote.executor);
    expect(vote.generated).toHaveLength(4);
    expect(voted.steps[0]!.replaced).toEqual([]);
  });

  it("samples a stage at its own temperature when the run names one", async () => {
    const { executor, generated } = scripted(() => "x");
    await runSearch(stage4({ stageTemperature: { CAPTION: 1.2, REASONING: 0 } }), executor);
    const temps = Object.fromEntries(generated.map((r) => [r.id.split(":")[1], r.temperature]));
    expect(temps).toEqual({ SUMMARY: undefined, CAPTION: 1.2, REASONING: 0, CONCLUSION: undefined });
    // The run's stage temperature before the item's own; the item's elsewhere.
    const own = scripted(() => "x");
    await runSearch(stage4({ temperature: 0.7, stageTemperature: { CAPTION: 1.2 } }), own.executor);
    const ownTemps = Object.fromEntries(own.generated.map((r) => [r.id.split(":")[1], r.temperature]));
    expect(ownTemps).toEqual({ SUMMARY: 0.7, CAPTION: 1.2, REASONING: 0.7, CONCLUSION: 0.7 });
    await expect(runSearch(stage4({ stageTemperature: { CAPTION: -1 } }), executor)).rejects.toThrow(
      /stageTemperature must be a number >= 0, got -1/,
    );
  });
});
