import { describe, expect, it } from "vitest";
import { normalizeAnswer, summarize, wilson95 } from "../../shared/core/eval/stats.ts";

describe("evaluation statistics", () => {
  it("gives the textbook Wilson interval", () => {
    const [lo, hi] = wilson95(50, 100);
    expect(lo).toBeCloseTo(0.4038, 3);
    expect(hi).toBeCloseTo(0.5962, 3);
    expect(wilson95(0, 10)[0]).toBe(0);
    expect(wilson95(10, 10)[1]).toBeCloseTo(1, 10);
  });

  it("summarises accuracy overall and per family, and the cost per item", () => {
    const summary = summarize(
      [
        { family: "count", correct: true, wellFormed: true, generatedTokens: 10 },
        { family: "count", correct: false, wellFormed: false, generatedTokens: 20 },
        { family: "exist", correct: true, wellFormed: true, generatedTokens: 30 },
      ],
      2,
      { decoderTokens: 600, forwardPasses: 66 },
    );
    expect(summary.overall.correct).toBe(2);
    expect(summary.byFamily.count!.accuracy).toBe(0.5);
    expect(summary.byFamily.exist!.accuracy).toBe(1);
    expect(summary.formatRate).toBeCloseTo(2 / 3);
    expect(summary.generatedTokensPerItem).toBe(20);
    expect(summary.itemsPerSecond).toBe(1.5);
    expect(summary.decoderTokensPerItem).toBe(200);
    expect(summary.forwardPassesPerItem).toBe(22);
  });

  it("compares answers without case, space or a final full stop", () => {
    expect(normalizeAnswer(" Yes. ")).toBe("yes");
    expect(normalizeAnswer(null)).toBe("");
  });
});
