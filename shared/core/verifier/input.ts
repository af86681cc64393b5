/**
 * What a verifier reads: the user turn (its `prompt` with the item's question, after the image),
 * then as the assistant's text the accepted stages as they are and the candidate cut into steps,
 * each followed by the marker. The verifier's training data and the engine build it alike.
 */
import type { Stage } from "../protocol/stages.ts";
import { renderTemplate } from "../prompts/templates.ts";
import { markSteps, splitSteps } from "./steps.ts";
import { stepRuleFor, type VerifierTemplate } from "./template.ts";

export function verifierPrompt(template: VerifierTemplate, question: string): string {
  return renderTemplate(template.prompt, { question });
}

export function verifierText(
  template: VerifierTemplate,
  prefix: string,
  candidate: string,
  stage: Stage | null,
): { text: string; steps: string[] } {
  const steps = splitSteps(candidate, stepRuleFor(template, stage));
  return { text: prefix + markSteps(steps, template.marker), steps };
}
