/**
 * How long an item's steps and their jobs took, kept in the request job's trace and in the
 * result record. Apart from protocol.ts so that reading a record loads no BullMQ.
 */
import { z } from "zod";

/** One work of the search, run by a child job (one or more a job): `id` is its first request's work id, `requests` how many it had. */
export const WorkTimingSchema = z.object({
  id: z.string(),
  kind: z.enum(["generate", "judge", "verify"]),
  // Records written before a child job ran a whole work held one request each.
  requests: z.number().int().positive().default(1),
  worker: z.string(),
  startedAt: z.number(),
  ms: z.number().nonnegative(),
});
export type WorkTiming = z.infer<typeof WorkTimingSchema>;

export const StepTimingSchema = z.object({
  label: z.string(),
  startedAt: z.number(),
  finishedAt: z.number(),
  seconds: z.number().nonnegative(),
  work: z.array(WorkTimingSchema),
});
export type StepTiming = z.infer<typeof StepTimingSchema>;
