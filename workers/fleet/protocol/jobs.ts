/**
 * The jobs the fleet adds: an item's request job (by the producer) and the child jobs that run
 * stretches of its search (by the request job). Ids are deterministic (ids.ts), so adding a job again while it
 * exists adds nothing.
 */
import type { SearchSettings } from "../../../shared/core/search/settings.ts";
import type { PendingWork } from "../../../shared/core/search/drive.ts";
import { childJobId, requestJobId } from "./ids.ts";
import {
  CHILD_JOB_OPTIONS,
  PROTOCOL_VERSION,
  REQUEST_JOB_OPTIONS,
  type ChildItem,
  type RequestItem,
  type RequestJobData,
  type StretchJobData,
} from "./protocol.ts";

/** The parent of a child job: the request job that waits for it. */
export interface ParentRef {
  id: string;
  queue: string;
}

/**
 * An item's request job, its search not started yet: no state and no trace, which the first
 * step creates from the run's settings, so a waiting job holds little more than its item.
 */
export function requestJob(run: string, item: RequestItem, settings: SearchSettings) {
  return {
    name: "request",
    data: { v: PROTOCOL_VERSION, run, item, judgeMode: settings.judgeMode, state: null } satisfies RequestJobData,
    opts: { ...REQUEST_JOB_OPTIONS, jobId: requestJobId(run, item.key) },
  };
}

/** Work of the search that a child job runs (everything `next` can return but the result). */
export type ChildWork = PendingWork;

/**
 * The child job id of a work: its first request's work id (ids.ts), which is deterministic
 * for a given search state.
 */
export const childWorkId = (work: ChildWork): string => work.requests[0]!.id;

/**
 * The child job of the stretch of the search that starts with `work` (worker/stretch.ts): the
 * search state `packed` (the state whose next work is `work`), on the queue of that work's
 * kind, under the work's id, so a step run again adds nothing twice.
 */
export function childJob(data: RequestJobData, work: ChildWork, packed: string, parent: ParentRef) {
  const { key, image, question, system } = data.item;
  const item: ChildItem = { key, image, question, ...(system !== undefined ? { system } : {}) };
  return {
    queue: work.kind,
    name: work.kind,
    data: { v: PROTOCOL_VERSION, run: data.run, item, state: packed } satisfies StretchJobData,
    opts: { ...CHILD_JOB_OPTIONS, jobId: childJobId(data.run, childWorkId(work)), parent },
  };
}
