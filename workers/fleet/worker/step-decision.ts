/**
 * What a request step does next, decided without I/O from the search's work, the children's
 * results as read, and the trace: finish, apply results, run a failed child again, fail the
 * item, or add the work's child and wait. And what applying a child's results writes in the
 * trace. request-step.ts runs the decision and records it.
 */
import type { SearchState, Work } from "../../../shared/core/search/index.ts";
import type { SearchResult } from "../../../shared/core/search/types.ts";
import {
  badInput,
  ChildReturnSchema,
  type ChildWork,
  childWorkId,
  FleetError,
  parseReason,
  type RequestTrace,
  retryDelay,
  type RetryPolicy,
  TRANSIENT_CODES,
  type WorkTiming,
} from "../protocol/index.ts";

/** The children's return values and failure reasons, by their work ids (protocol/jobs.ts: childWorkId). */
export interface Children {
  values: Map<string, unknown>;
  failures: Map<string, string>;
}

export type StepAction =
  | { kind: "finish"; result: SearchResult }
  /** Apply results to the state; `child` is null for work without requests (nothing to time). */
  | { kind: "apply"; results: never[]; child: { timing: WorkTiming; model: string } | null }
  /** Run a child that failed on the infrastructure again; `orFail` when it no longer exists. */
  | { kind: "retry-child"; work: ChildWork; childId: string; code: string; orFail: FleetError }
  | { kind: "fail"; error: FleetError }
  | { kind: "add-child"; work: ChildWork };

/** The work's child id, or null when the work needs no child (done, or no requests). */
export const childOf = (work: Work): string | null =>
  work.kind === "done" || work.requests.length === 0 ? null : childWorkId(work);

export function decideStep(work: Work, children: Children, trace: RequestTrace, policy: RetryPolicy): StepAction {
  if (work.kind === "done") return { kind: "finish", result: work.result };
  if (work.requests.length === 0) return { kind: "apply", results: [], child: null };
  const childId = childWorkId(work);
  const value = children.values.get(childId);
  const failure = children.failures.get(childId);
  if (value === undefined && failure !== undefined) {
    const { code, message } = parseReason(failure);
    const error = new FleetError(code, `${work.kind} ${childId} failed: ${message}`, true);
    // Only the infrastructure's failures; a child's bad input or its own spent attempts are final.
    const again =
      TRANSIENT_CODES.has(code) && retryDelay(policy, { code, unrecoverable: false }, trace.childRetries + 1) !== null;
    return again ? { kind: "retry-child", work, childId, code, orFail: error } : { kind: "fail", error };
  }
  if (value === undefined) return { kind: "add-child", work };
  const parsed = ChildReturnSchema.safeParse(value);
  if (!parsed.success) throw badInput("bad-result", `${work.kind} ${childId} returned an invalid value`);
  const { results: byId, meta } = parsed.data;
  const results = work.requests.map((r) => {
    if (!(r.id in byId)) throw badInput("bad-result", `${work.kind} ${childId} returned no result for ${r.id}`);
    return byId[r.id] as never;
  });
  const timing: WorkTiming = {
    id: childId,
    kind: work.kind,
    requests: work.requests.length,
    worker: meta.worker,
    startedAt: meta.startedAt,
    ms: meta.ms,
  };
  return { kind: "apply", results, child: { timing, model: meta.model } };
}

/**
 * The trace after a child's results were applied: its model and timing, and, when they
 * finished a step of the search (`after` has more steps than `stepsBefore`), that step with its
 * work and how long it took.
 */
export function traceApplied(
  trace: RequestTrace,
  child: { timing: WorkTiming; model: string },
  stepsBefore: number,
  after: SearchState,
  now: () => number,
): { trace: RequestTrace; step: { label: string; seconds: number } | null } {
  let t: RequestTrace = trace.models.includes(child.model) ? trace : { ...trace, models: [...trace.models, child.model] };
  t = { ...t, work: [...t.work, child.timing] };
  if (after.steps.length <= stepsBefore) return { trace: t, step: null };
  const label = after.steps[after.steps.length - 1]!.label;
  const finishedAt = now();
  const startedAt = t.stepStartedAt ?? finishedAt;
  const seconds = Math.max(0, finishedAt - startedAt) / 1000;
  return {
    trace: { ...t, steps: [...t.steps, { label, startedAt, finishedAt, seconds, work: t.work }], work: [], stepStartedAt: null },
    step: { label, seconds },
  };
}
