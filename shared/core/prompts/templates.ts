import { Template } from "@huggingface/jinja";
import { z } from "zod";
import type { CheckRequest, CompareRequest } from "../search/types.ts";

/**
 * How a model is asked to judge: one jinja template per comparison kind, the text the
 * judge's answer starts with, and the words that carry its verdict. Lives in the model
 * folder (`judge_templates.json`) because each model is trained on its own wording.
 */
export const JudgeTemplatesSchema = z.object({
  compare: z.object({
    SUMMARY: z.string(),
    CAPTION: z.string(),
    REASONING: z.string(),
    CONCLUSION: z.string(),
    all: z.string(),
    sentence: z.string(),
  }),
  reasoning_check: z.string(),
  /** The judge's answer begins with this; score mode feeds it and reads the next token. */
  verdict_prefix: z.string(),
  /** Continuations of verdict_prefix meaning "response 1" / "response 2". */
  choices: z.object({ "1": z.string(), "2": z.string() }),
  /** Answers of the reasoning check. */
  check_answers: z.object({ correct: z.string(), incorrect: z.string() }),
});
export type JudgeTemplates = z.infer<typeof JudgeTemplatesSchema>;

const compiled = new Map<string, Template>();
export function renderTemplate(source: string, values: Record<string, unknown>): string {
  let template = compiled.get(source);
  if (!template) {
    template = new Template(source);
    compiled.set(source, template);
  }
  return template.render(values);
}

/** The user-turn text of a judge prompt (the image goes in front of it, as for questions). */
export function renderJudgeText(
  templates: JudgeTemplates,
  question: string,
  request:
    | Pick<CompareRequest, "kind" | "template" | "hint" | "first" | "second">
    | Pick<CheckRequest, "kind" | "hint" | "candidate">,
): string {
  if (request.kind === "check") {
    return renderTemplate(templates.reasoning_check, { question, hint: request.hint, candidate: request.candidate }).trim();
  }
  return renderTemplate(templates.compare[request.template], {
    question,
    hint: request.hint,
    first: request.first,
    second: request.second,
  }).trim();
}

/** The text a judge answers with for a verdict: what training targets and generate mode parse. */
export const verdictText = (templates: JudgeTemplates, verdict: 1 | 2): string =>
  `${templates.verdict_prefix}${templates.choices[verdict]}`;
