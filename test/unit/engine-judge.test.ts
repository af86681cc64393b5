import { describe, expect, it } from "vitest";
import type { JudgeTemplates } from "../../shared/core/prompts/templates.ts";
import { parseCheckVerdict, parseCompareVerdict } from "../../workers/engine/judge.ts";

const TEMPLATES: JudgeTemplates = {
  compare: { SUMMARY: "", CAPTION: "", REASONING: "", CONCLUSION: "", all: "", sentence: "" },
  reasoning_check: "",
  verdict_prefix: "I choose response",
  choices: { "1": " 1", "2": " 2" },
  check_answers: { correct: "correct", incorrect: "incorrect" },
};

describe("generated judge answers", () => {
  it("reads the verdict of a compare answer", () => {
    expect(parseCompareVerdict(TEMPLATES, "I choose response 1")).toBe(1);
    expect(parseCompareVerdict(TEMPLATES, "Since the caption counts correctly, I choose response 2.")).toBe(2);
    expect(parseCompareVerdict(TEMPLATES, "I choose response2")).toBe(2);
    expect(parseCompareVerdict(TEMPLATES, "I choose response 12")).toBeNull();
    expect(parseCompareVerdict(TEMPLATES, "response 1 is better")).toBeNull();
    expect(parseCompareVerdict(TEMPLATES, "")).toBeNull();
  });

  it("follows the model's own wording", () => {
    const t = { ...TEMPLATES, verdict_prefix: "Best:", choices: { "1": " first", "2": " second" } };
    expect(parseCompareVerdict(t, "Best: second")).toBe(2);
    expect(parseCompareVerdict(t, "I choose response 1")).toBe(1);
  });

  it("reads a check answer without mistaking incorrect for correct", () => {
    expect(parseCheckVerdict(TEMPLATES, "correct")).toBe("correct");
    expect(parseCheckVerdict(TEMPLATES, "incorrect")).toBe("incorrect");
    expect(parseCheckVerdict(TEMPLATES, "The reasoning is Incorrect.")).toBe("incorrect");
    expect(parseCheckVerdict(TEMPLATES, "uncorrected")).toBeNull();
    expect(parseCheckVerdict(TEMPLATES, "I choose response 1")).toBeNull();
  });
});
