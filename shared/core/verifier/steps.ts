/**
 * Cutting a candidate into verifier steps and marking them. The verifier's training data and the
 * engine's scoring both cut with these functions, so a score is read where the model learned it.
 */
import { splitSentences } from "../protocol/sentences.ts";
import type { StepRule } from "./template.ts";

// After `,` or `:`, before ` and `, and at sentence ends: "The red objects are: a small red
// circle and a large red square." names two objects and ends with the second.
const OBJECT_END_RE = /[,:](?=\s)|(?= and )/g;

/** The steps of `text` under `rule`; joined back together they give `text` exactly. Empty text has no steps. */
export function splitSteps(text: string, rule: StepRule): string[] {
  if (text.length === 0) return [];
  if (rule === "whole") return [text];
  const sentences = splitSentences(text);
  if (rule === "sentences") return sentences;
  return sentences.flatMap(splitObjects);
}

function splitObjects(sentence: string): string[] {
  const pieces: string[] = [];
  let start = 0;
  for (const m of sentence.matchAll(OBJECT_END_RE)) {
    const end = m.index + m[0].length;
    if (end > start && sentence.slice(start, end).trim().length > 0) {
      pieces.push(sentence.slice(start, end));
      start = end;
    }
  }
  if (start < sentence.length) {
    // Trailing whitespace or a lone end tag is not a step of its own.
    if (pieces.length > 0 && /^\s*(<\/[A-Z]+>)?\s*$/.test(sentence.slice(start)))
      pieces[pieces.length - 1] += sentence.slice(start);
    else pieces.push(sentence.slice(start));
  }
  return pieces;
}

/** The steps with `marker` after each one: the text the verifier reads. */
export function markSteps(steps: readonly string[], marker: string): string {
  return steps.map((s) => s + marker).join("");
}
