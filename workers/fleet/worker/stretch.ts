/**
 * A child job's stretch of an item's search: from the state its parent saved, the same machine
 * on the same executor as the in-process driver (`advance`), work after work, while the work
 * needs the model the stretch started on. The parent takes the state it returns, with a timing
 * per work and the end of each search step the stretch decided, so its trace is the one it
 * always was, a step at a time.
 *
 * Stopping only where the other model is needed (a verifier's scores among a policy's
 * candidates) keeps the policy and the verifier on their own workers, scaling apart; a search
 * that needs one model (stage N=4 with the pairwise judge) is one child job an item, so BullMQ's
 * cycle of a job and the parent's wake-ups, which are what Redis spends its CPU on, happen once
 * an item rather than once a work. A worker that dies in a stretch loses the stretch: the
 * child runs it again from the parent's state, and the item's answer is the same.
 */
import { advance, type PendingWork, type SearchExecutor, type SearchState } from "../../../shared/core/search/index.ts";
import type { StepEnd, WorkTiming } from "../protocol/index.ts";

/** The model a work needs: the verifier scores candidates, the policy does the rest. */
export const modelOf = (kind: PendingWork["kind"]): "policy" | "verifier" => (kind === "verify" ? "verifier" : "policy");

/** Whether a stretch that started with `first` goes on with `work`. */
export const stretchGoesOn = (first: PendingWork, work: PendingWork): boolean => modelOf(work.kind) === modelOf(first.kind);

export interface Stretch {
  state: SearchState;
  /** One timing a work run, in order. */
  work: WorkTiming[];
  /** Each search step the stretch decided: how many of its works had run then, and when. */
  steps: StepEnd[];
}

/** Runs the stretch that starts at `start` (whose next work is `first`) on `executor`. */
export async function runStretch(
  start: SearchState,
  first: PendingWork,
  executor: SearchExecutor,
  worker: string,
  now: () => number = Date.now,
): Promise<Stretch> {
  const work: WorkTiming[] = [];
  const steps: StepEnd[] = [];
  const timed =
    <Q extends { id: string }, R>(kind: PendingWork["kind"], run: (requests: Q[]) => Promise<R[]>) =>
    async (requests: Q[]): Promise<R[]> => {
      const startedAt = now();
      const results = await run(requests);
      if (requests.length > 0) {
        work.push({
          id: requests[0]!.id,
          kind,
          requests: requests.length,
          worker,
          startedAt,
          ms: Math.max(0, now() - startedAt),
        });
      }
      return results;
    };
  const verify = executor.verify;
  const timedExecutor: SearchExecutor = {
    generate: timed("generate", (r) => executor.generate(r)),
    judge: timed("judge", (r) => executor.judge(r)),
    ...(verify !== undefined ? { verify: timed("verify", (r) => verify(r)) } : {}),
  };
  let seen = start.steps.length;
  const state = await advance(start, timedExecutor, (w, s) => {
    for (; seen < s.steps.length; seen++) steps.push({ works: work.length, finishedAt: now() });
    return stretchGoesOn(first, w);
  });
  for (; seen < state.steps.length; seen++) steps.push({ works: work.length, finishedAt: now() });
  return { state, work, steps };
}
