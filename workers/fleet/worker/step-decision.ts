/**
 * What a request step does next, decided without I/O from the search's work, the children's
 * returns as read, and the trace: finish, take the state a child's stretch reached, run a
 * failed child again, fail the item, or add the work's child and wait. And what taking a
 * child's stretch writes in the trace. request-step.ts runs the decision and records it.
 */
import { parseSearchState, type SearchState, type Work } from "../../../shared/core/search/index.ts";
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
  type StepEnd,
  TRANSIENT_CODES,
  unpackState,
  type WorkTiming,
} from "../protocol/index.ts";

/** The children's return values and failure reasons, by their work ids (protocol/jobs.ts: childWorkId). */
export interface Children {
  values: Map<string, unknown>;
  failures: Map<string, string>;
}

/** What a child's stretch ran: a timing a work, the end of each step it decided, and the digest of the model that ran them. */
export interface ChildStretch {
  work: WorkTiming[];
  steps: StepEnd[];
  model: string;
}

export type StepAction =
  | { kind: "finish"; result: SearchResult }
  /** Work without requests: apply no results to the state (no child, nothing to time). */
  | { kind: "apply-none" }
  /** Go on from the state the work's child reached, with the timing of each work it ran. */
  | { kind: "advance"; state: SearchState; child: ChildStretch }
  /** Run a child that failed on the infrastructure again; `orFail` when it no longer exists. */
  | { kind: "retry-child"; work: ChildWork; childId: string; code: string; orFail: FleetError }
  | { kind: "fail"; error: FleetError }
  | { kind: "add-child"; work: ChildWork };

/** The work's child id, or null when the work needs no child (done, or no requests). */
export const childOf = (work: Work): string | null =>
  work.kind === "done" || work.requests.length === 0 ? null : childWorkId(work);

export function decideStep(
  work: Work,
  state: SearchState,
  children: Children,
  trace: RequestTrace,
  policy: RetryPolicy,
): StepAction {
  if (work.kind === "done") return { kind: "finish", result: work.result };
  if (work.requests.length === 0) return { kind: "apply-none" };
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
  let after: SearchState;
  try {
    after = parseSearchState(unpackState(parsed.data.state));
  } catch (err) {
    throw badInput("bad-result", `${work.kind} ${childId} returned an invalid search state: ${(err as Error).message}`);
  }
  // A stretch only goes forward from the state it was given, and says when each step it decided ended.
  const { work: works, steps, model } = parsed.data;
  if (
    after.params.itemId !== state.params.itemId ||
    after.steps.length - state.steps.length !== steps.length ||
    steps.some((s, i) => s.works > works.length || (i > 0 && s.works < steps[i - 1]!.works))
  ) {
    throw badInput("bad-result", `${work.kind} ${childId} returned a search state that does not follow the one it was given`);
  }
  return { kind: "advance", state: after, child: { work: works, steps, model } };
}

/**
 * The trace after a child's stretch was taken: its model, the timing of each work it ran, and
 * each step of the search it decided (the steps of `after` from `stepsBefore` on), with that
 * step's work and how long it took: from when the parent first asked for work of the step (or,
 * for a step the stretch began itself, its first work's start) to the stretch's end of it.
 */
export function traceApplied(
  trace: RequestTrace,
  child: ChildStretch,
  stepsBefore: number,
  after: SearchState,
): { trace: RequestTrace; steps: { label: string; seconds: number }[] } {
  let t: RequestTrace = trace.models.includes(child.model) ? trace : { ...trace, models: [...trace.models, child.model] };
  const decided: { label: string; seconds: number }[] = [];
  let from = 0;
  child.steps.forEach((end, k) => {
    const work = [...t.work, ...child.work.slice(from, end.works)];
    const label = after.steps[stepsBefore + k]!.label;
    const startedAt = t.stepStartedAt ?? work[0]?.startedAt ?? end.finishedAt;
    const seconds = Math.max(0, end.finishedAt - startedAt) / 1000;
    t = {
      ...t,
      steps: [...t.steps, { label, startedAt, finishedAt: end.finishedAt, seconds, work }],
      work: [],
      stepStartedAt: null,
    };
    decided.push({ label, seconds });
    from = end.works;
  });
  return { trace: { ...t, work: [...t.work, ...child.work.slice(from)] }, steps: decided };
}
