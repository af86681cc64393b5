/**
 * The bundled process verifier, models/stagebeam-tiny-prm: its verifier.json parses, its marker and
 * verdict tokens are single tokens of its own tokenizer (the engine reads one logit each), and it
 * reads the policy's text with the policy's ids. Also the per-step labels its training data uses.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";
import { markSteps, splitSteps, stepRuleFor, VerifierTemplateSchema, VERIFIER_FILE } from "../../shared/core/verifier/index.ts";
import { stepLabels } from "../../models/training/verifier-labels.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const readJson = (dir: string, file: string) => JSON.parse(readFileSync(path.join(ROOT, dir, file), "utf8"));
const tokenizerOf = (dir: string) => new Tokenizer(readJson(dir, "tokenizer.json"), readJson(dir, "tokenizer_config.json"));
const VERIFIER = "models/stagebeam-tiny-prm";

const ACCEPTED = "<SUMMARY>I will find the red objects in the image and count them.</SUMMARY>";
const CAPTION =
  "<CAPTION>The red objects in the image are: a small red circle, a large red square and a small red triangle.</CAPTION>";

describe("models/stagebeam-tiny-prm", () => {
  const template = VerifierTemplateSchema.parse(readJson(VERIFIER, VERIFIER_FILE));
  const tokenizer = tokenizerOf(VERIFIER);
  const encode = (text: string): number[] => tokenizer.encode(text, { add_special_tokens: false }).ids;

  it("has single-token, distinct marker, good and bad tokens inside the decoder's vocabulary", () => {
    const { vocab_size } = readJson(VERIFIER, "config.json");
    const ids = [template.marker, template.good, template.bad].map((text) => {
      const tokens = encode(text);
      expect(tokens, text).toHaveLength(1);
      expect(tokens[0]!).toBeLessThan(vocab_size);
      return tokens[0]!;
    });
    expect(new Set(ids).size).toBe(3);
  });

  it("marks each caption object once and reads the policy's text with the policy's ids", () => {
    const marked = ACCEPTED + markSteps(splitSteps(CAPTION, stepRuleFor(template, "CAPTION")), template.marker);
    const ids = encode(marked);
    const markerId = encode(template.marker)[0]!;
    expect(ids.filter((id) => id === markerId)).toHaveLength(4);
    const policy = tokenizerOf("models/stagebeam-tiny");
    expect(ids.filter((id) => id !== markerId)).toEqual(policy.encode(ACCEPTED + CAPTION, { add_special_tokens: false }).ids);
  });
});

describe("verifier step labels", () => {
  it("are good up to the first step that differs from the right text, and bad from there on", () => {
    const wrong =
      "<CAPTION>The red objects in the image are: a small red circle, a large red circle and a small red triangle.</CAPTION>";
    expect(stepLabels(wrong, CAPTION, "caption-objects").good).toEqual([true, true, false, false]);
    expect(stepLabels(CAPTION, CAPTION, "caption-objects").good).toEqual([true, true, true, true]);
    // one object missed: "a small red circle and ..." claims a single object follows
    const fewer = "<CAPTION>The red objects in the image are: a small red circle and a small red triangle.</CAPTION>";
    expect(stepLabels(fewer, CAPTION, "caption-objects").good).toEqual([true, false, false]);
    expect(stepLabels("<CONCLUSION>4</CONCLUSION>", "<CONCLUSION>3</CONCLUSION>", "whole").good).toEqual([false]);
  });
});
