/**
 * `stagebeam cancel`: the run moves to `cancelled`, which
 *
 *   * stops its feeder at the next chunk (it looks at the state before each one),
 *   * removes its waiting request jobs (and the feed job, when it waits) from the shared
 *     queues, each recorded as failed with reason `cancelled`,
 *   * lets in-flight work end on its own: a generate or judge call already running finishes,
 *     but nothing new starts for the run: its waiting children, and its request jobs at their
 *     next step, are dropped by the workers and recorded as `cancelled` (worker/request-step.ts).
 *
 * Lines the feeder never reached are not items of the run; `status` shows how far it read.
 * Other runs sharing the queues are not touched.
 */
import type { S3Store } from "../../../shared/io/storage/s3-store.ts";
import {
  feedJobId,
  fleetFailure,
  type FleetQueues,
  parseJobData,
  putFailureRecord,
  RequestJobDataSchema,
} from "../protocol/index.ts";
import { mirrorRunState, type RunLedger, type RunRegistry, type RunState } from "../books/index.ts";

export interface CancelSummary {
  /** The state the run was in; null when it was already over (nothing done). */
  from: RunState | null;
  state: RunState | null;
  removed: number;
}

export async function cancelRun(
  run: string,
  deps: { queues: Pick<FleetQueues, "request" | "feed">; store: S3Store; ledger: RunLedger; runs: RunRegistry },
  now = Date.now,
): Promise<CancelSummary> {
  const from = await deps.runs.transition(run, "cancelled", "cancelled by stagebeam cancel", now());
  if (from === null) return { from, state: await deps.runs.state(run, 0), removed: 0 };
  await mirrorRunState(deps.store, run, { state: "cancelled", reason: "cancelled by stagebeam cancel", updatedAt: now() });
  const feed = await deps.queues.feed.getJob(feedJobId(run));
  if (feed && (await feed.isWaiting())) await feed.remove();

  const head = `${run}/`;
  const ids = (await deps.queues.request.getRanges(["wait", "prioritized", "delayed"], 0, -1)).filter((id) =>
    id.startsWith(head),
  );
  let removed = 0;
  for (const id of ids) {
    const job = await deps.queues.request.getJob(id);
    if (!job) continue;
    // A job that a worker took meanwhile is locked: remove() refuses it, and the worker drops it at its step.
    if ((await deps.queues.request.remove(id)) !== 1) continue;
    removed++;
    const { item } = parseJobData(RequestJobDataSchema, job.data, "request");
    await putFailureRecord(
      deps.store,
      fleetFailure(run, item, {
        reason: "cancelled",
        message: `run ${run} was cancelled before the item started`,
        field: null,
        at: new Date(now()).toISOString(),
      }),
    );
    await deps.ledger.recordOutcome(run, item.key, "f:cancelled", { byWorker: false });
  }
  return { from, state: "cancelled", removed };
}
