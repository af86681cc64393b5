/**
 * A verifier's own score statistics. swires retraces unless a reasoning stands out from the
 * verifier's population of reasoning scores (the reference: mean + 0.2533·sd of its reward
 * model's scores, whose mean and sd it hard-codes). A verifier's scores have their own
 * population, so `stagebeam verifier calibrate` measures it on a calibration set (every
 * reasoning candidate swires samples there, scored by this verifier) and keeps it in
 * `verifier.json`, where the search reads it.
 */
import { z } from "zod";

export const CalibrationSchema = z
  .object({
    /** The stage whose candidates were scored: the retrace test reads reasoning scores. */
    stage: z.literal("REASONING"),
    mean: z.number().min(0).max(1),
    /** Population standard deviation. */
    sd: z.number().min(0).max(1),
    /** Scores measured, and the items they came from. */
    scores: z.number().int().positive(),
    items: z.number().int().positive(),
    /** Where they came from: the set as given to the command, the seed, and the policy model's digest. */
    set: z.string(),
    seed: z.number().int().nonnegative(),
    policy: z.string(),
  })
  .strict();
export type Calibration = z.infer<typeof CalibrationSchema>;

/** Mean and population standard deviation. */
export function spread(xs: readonly number[]): { mean: number; sd: number } {
  if (xs.length === 0) throw new Error("the spread of no scores is undefined");
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  return { mean, sd: Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length) };
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

export function calibrationOf(
  scores: readonly number[],
  from: Pick<Calibration, "items" | "set" | "seed" | "policy">,
): Calibration {
  const { mean, sd } = spread(scores);
  return { stage: "REASONING", mean: round(mean), sd: round(sd), scores: scores.length, ...from };
}
