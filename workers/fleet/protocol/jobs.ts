/**
 * The jobs the fleet adds: an item's request job (by the producer) and the child job of each
 * work of its search (by the request job). Ids are deterministic (ids.ts), so adding a job again while it
 * exists adds nothing.
 */
import type { SearchSettings } from "../../../shared/core/search/settings.ts";
import type { Work } from "../../../shared/core/search/types.ts";
import { childJobId, requestJobId } from "./ids.ts";
import {
  CHILD_JOB_OPTIONS,
  PROTOCOL_VERSION,
  REQUEST_JOB_OPTIONS,
  type ChildItem,
  type GenerateJobData,
  type JudgeJobData,
  type RequestItem,
  type RequestJobData,
  type VerifyJobData,
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
export type ChildWork = Exclude<Work, { kind: "done" }>;

/**
 * The child job id of a work: its first request's work id (ids.ts), which is deterministic
 * for a given search state.
 */
export const childWorkId = (work: ChildWork): string => work.requests[0]!.id;

/**
 * The one child job of a work: every request of the work in one job, so the N candidates of a
 * step meet on one worker and in one call of its model host (the prefix is computed once and
 * forked), and a step costs BullMQ one job's cycle instead of N.
 */
export function childJob(data: RequestJobData, work: ChildWork, parent: ParentRef) {
  const item: ChildItem = { key: data.item.key, image: data.item.image, question: data.item.question };
  const base = { v: PROTOCOL_VERSION, run: data.run, item } as const;
  const job = { name: work.kind, opts: { ...CHILD_JOB_OPTIONS, jobId: childJobId(data.run, childWorkId(work)), parent } };
  switch (work.kind) {
    case "generate":
      return { ...job, data: { ...base, judgeMode: data.judgeMode, requests: work.requests } satisfies GenerateJobData };
    case "judge":
      return { ...job, data: { ...base, judgeMode: data.judgeMode, requests: work.requests } satisfies JudgeJobData };
    case "verify":
      // The verifier opens the item under its own prompt, so no judge mode travels.
      return { ...job, data: { ...base, requests: work.requests } satisfies VerifyJobData };
  }
}
