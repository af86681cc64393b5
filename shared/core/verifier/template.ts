/**
 * `verifier.json`: what turns a model folder into a process verifier. The folder is in the
 * engine's layout (a published PRM export, the bundled `stagebeam-tiny-prm`, or the policy model
 * itself as a self-verifier); this file says how a candidate is cut into steps, which token marks
 * the end of a step, and which two tokens' logits at a marker give that step's score.
 */
import { z } from "zod";
import { STAGES } from "../protocol/stages.ts";
import { CalibrationSchema } from "./calibration.ts";

export const VERIFIER_FILE = "verifier.json";
export const VERIFIER_FORMAT = "stagebeam-verifier/1";

/**
 * `sentences`: real PRMs score sentence by sentence. `caption-objects`: one step per object a
 * caption names (cut at `,`, ` and `, `:` and sentence ends), so a wrong object is its own step.
 * `whole`: the candidate is one step.
 */
export const STEP_RULES = ["sentences", "caption-objects", "whole"] as const;
export type StepRule = (typeof STEP_RULES)[number];

/** How step scores become the candidate's score; `min` (a chain is as good as its worst step) is the PRM default. */
export const POOL_RULES = ["min", "mean", "last"] as const;
export type PoolRule = (typeof POOL_RULES)[number];

const tokenText = z.string().min(1);

export const VerifierTemplateSchema = z
  .object({
    format: z.literal(VERIFIER_FORMAT),
    /** Jinja text of the user turn after the image; `question` is the item's question. */
    prompt: z.string().min(1).default("{{ question }}"),
    steps: z
      .object({
        default: z.enum(STEP_RULES).default("sentences"),
        stages: z.partialRecord(z.enum(STAGES), z.enum(STEP_RULES)).default({}),
      })
      .strict()
      .default({ default: "sentences", stages: {} }),
    /** Text of the one token appended after each step; the score is read from the logits at its position. */
    marker: tokenText,
    /** Texts of the one-token answers "this step is right" and "this step is wrong". */
    good: tokenText,
    bad: tokenText,
    pool: z.enum(POOL_RULES).default("min"),
    /** The verifier's reasoning-score statistics (calibration.ts), written by `stagebeam verifier calibrate`. */
    calibration: CalibrationSchema.optional(),
  })
  .strict();
export type VerifierTemplate = z.infer<typeof VerifierTemplateSchema>;

/** The step rule for a candidate of `stage` (`null` for whole answers and sentence steps: the default rule). */
export function stepRuleFor(template: VerifierTemplate, stage: (typeof STAGES)[number] | null): StepRule {
  return (stage !== null ? template.steps.stages[stage] : undefined) ?? template.steps.default;
}
