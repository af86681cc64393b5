import { describe, expect, it } from "vitest";
import {
  markSteps,
  poolScores,
  splitSteps,
  stepRuleFor,
  stepScore,
  STEP_RULES,
  VerifierTemplateSchema,
} from "../../shared/core/verifier/index.ts";

const CAPTION =
  "The blue objects are: a small blue triangle and a small blue circle. The red objects are: a large red triangle.</CAPTION>";
const REASONING = "Counting the blue objects: 1 + 1 = 2. 2 is more than 1, so the answer is yes.</REASONING>";

describe("verifier steps", () => {
  it("cuts a caption into the objects it names and a reasoning into sentences, losing no character", () => {
    expect(splitSteps(CAPTION, "caption-objects")).toEqual([
      "The blue objects are:",
      " a small blue triangle",
      " and a small blue circle.",
      " The red objects are:",
      " a large red triangle.</CAPTION>",
    ]);
    expect(splitSteps(REASONING, "sentences")).toEqual([
      "Counting the blue objects: 1 + 1 = 2.",
      " 2 is more than 1, so the answer is yes.</REASONING>",
    ]);
    for (const rule of STEP_RULES) {
      for (const text of [CAPTION, REASONING, "no end", "a, b and c. ", "x.</SUMMARY>"]) {
        expect(splitSteps(text, rule).join("")).toBe(text);
      }
      expect(splitSteps("", rule)).toEqual([]);
    }
    expect(splitSteps(REASONING, "whole")).toEqual([REASONING]);
  });

  it("marks the end of every step", () => {
    expect(markSteps(["a.", " b."], "<step>")).toBe("a.<step> b.<step>");
  });

  it("pools by min, mean or last, and scores a step by softmax over its two tokens", () => {
    expect(poolScores([0.9, 0.2, 0.6], "min")).toBe(0.2);
    expect(poolScores([0.9, 0.3, 0.6], "mean")).toBeCloseTo(0.6);
    expect(poolScores([0.9, 0.2, 0.6], "last")).toBe(0.6);
    expect(poolScores([], "min")).toBe(0);
    expect(stepScore(2, 2)).toBe(0.5);
    expect(stepScore(3, 0)).toBeCloseTo(1 / (1 + Math.exp(-3)));
  });
});

describe("verifier.json", () => {
  it("fills defaults and picks a stage's rule", () => {
    const t = VerifierTemplateSchema.parse({
      format: "stagebeam-verifier/1",
      marker: "<step>",
      good: "+",
      bad: "-",
      steps: { stages: { CAPTION: "caption-objects" } },
    });
    expect(t).toMatchObject({ prompt: "{{ question }}", pool: "min" });
    expect(stepRuleFor(t, "CAPTION")).toBe("caption-objects");
    expect(stepRuleFor(t, "REASONING")).toBe("sentences");
    expect(stepRuleFor(t, null)).toBe("sentences");
  });

  it("refuses unknown fields and rules", () => {
    const base = { format: "stagebeam-verifier/1", marker: "<step>", good: "+", bad: "-" };
    expect(() => VerifierTemplateSchema.parse({ ...base, pooling: "min" })).toThrow();
    expect(() => VerifierTemplateSchema.parse({ ...base, pool: "max" })).toThrow();
    expect(() => VerifierTemplateSchema.parse({ ...base, marker: "" })).toThrow();
  });
});
