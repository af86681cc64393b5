/**
 * The jobs the fleet adds: an item's request job (by the producer) and the child jobs of a
 * step (by the request job). Ids are deterministic (ids.ts), so adding a job again while it
 * exists adds nothing.
 */
import type { SearchSettings } from "../../shared/core/search/settings.ts";
import type { GenerateRequest, JudgeRequest, VerifyRequest } from "../../shared/core/search/types.ts";
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

/** What every child of a request carries: enough to open the item on any worker. */
function childBase(data: RequestJobData) {
  const item: ChildItem = { key: data.item.key, image: data.item.image, question: data.item.question };
  return { v: PROTOCOL_VERSION, run: data.run, item, judgeMode: data.judgeMode } as const;
}

const childOptions = (run: string, workId: string, parent: ParentRef) => ({
  ...CHILD_JOB_OPTIONS,
  jobId: childJobId(run, workId),
  parent,
});

export function generateJobs(data: RequestJobData, requests: readonly GenerateRequest[], parent: ParentRef) {
  const base = childBase(data);
  return requests.map((request) => ({
    name: "generate",
    data: { ...base, request } satisfies GenerateJobData,
    opts: childOptions(data.run, request.id, parent),
  }));
}

export function judgeJobs(data: RequestJobData, requests: readonly JudgeRequest[], parent: ParentRef) {
  const base = childBase(data);
  return requests.map((request) => ({
    name: request.kind,
    data: { ...base, request } satisfies JudgeJobData,
    opts: childOptions(data.run, request.id, parent),
  }));
}

export function verifyJobs(data: RequestJobData, requests: readonly VerifyRequest[], parent: ParentRef) {
  const { judgeMode: _judgeMode, ...base } = childBase(data);
  return requests.map((request) => ({
    name: "verify",
    data: { ...base, request } satisfies VerifyJobData,
    opts: childOptions(data.run, request.id, parent),
  }));
}
