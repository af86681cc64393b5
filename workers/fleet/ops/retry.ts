/**
 * `stagebeam retry`: re-enqueues a run's failed items (all, or those failed for one reason)
 * with the run's settings. Each item's input comes from its failure record; a local image is
 * staged again (it must decode now), an s3:// one is used where it is. The item's outcome is
 * forgotten before its new job is added, so the ledger counts it once, whichever attempt
 * succeeds; its old request job (and its children) are removed first, so that the new
 * attempt's jobs, which have the same ids, are really added.
 *
 * A bad manifest line (a missing field, say) cannot be retried from its record: fix the line
 * and submit the manifest again, which looks at refused lines anew.
 */
import pLimit from "p-limit";
import { UsageError } from "../../../shared/core/usage-error.ts";
import { failureKey, type S3Store } from "../../../shared/io/storage/s3-store.ts";
import { ImageStager, waitForRoom } from "../feed/index.ts";
import { FailureRecordSchema, type FleetQueues, requestJob, requestJobId } from "../protocol/index.ts";
import { mirrorRunState, type RunLedger, type RunRegistry } from "../books/index.ts";

export interface RetrySummary {
  retried: number;
  /** Items left failed, each with why. */
  notRetried: { item: string; reason: string; why: string }[];
}

export async function retryRun(
  run: string,
  opts: { reason?: string; signal?: AbortSignal; backlogPollMs?: number },
  deps: { queues: Pick<FleetQueues, "request">; store: S3Store; ledger: RunLedger; runs: RunRegistry },
): Promise<RetrySummary> {
  const meta = await deps.runs.get(run);
  if (!meta) throw new UsageError(`no run named ${JSON.stringify(run)} in Redis`);
  if (meta.state === "cancelled" || meta.state === "failed")
    throw new UsageError(
      `run ${run} is ${meta.state}${meta.reason ? ` (${meta.reason})` : ""}; only items of a run that goes on can be retried`,
    );
  const summary: RetrySummary = { retried: 0, notRetried: [] };
  const images = new ImageStager(deps.store);
  const limit = pLimit(16);
  const backlog = {
    maxBacklog: meta.maxBacklog,
    pollMs: opts.backlogPollMs ?? 500,
    ...(opts.signal ? { signal: opts.signal } : {}),
    onBacklog: () => {},
  };
  for await (const page of deps.ledger.failedItems(run, opts.reason)) {
    const prepared = await Promise.all(
      page.map(({ item, outcome }) =>
        limit(async () => {
          const reason = outcome.slice(2);
          const skip = (why: string) => {
            summary.notRetried.push({ item, reason, why });
            return null;
          };
          const record = await deps.store.getJson(failureKey(run, item), FailureRecordSchema);
          if (!record) return skip("its failure record is not in S3");
          const { image, question, answer } = record.input;
          if (image === null || question === null || record.id === null || record.line === null)
            return skip("a bad manifest line: fix the line and submit the manifest again");
          const staged = await images.stage(image);
          if ("error" in staged) return skip(staged.error);
          return { item, record, image: staged.uri, question, answer };
        }),
      ),
    );
    const ready = prepared.filter((p) => p !== null);
    if (ready.length === 0) continue;
    if (!(await waitForRoom(deps.queues.request, ready.length, backlog))) break;
    for (const p of ready) {
      await deps.queues.request.remove(requestJobId(run, p.item), { removeChildren: true });
      await deps.ledger.resetOutcome(run, p.item);
      await deps.store.delete(failureKey(run, p.item));
    }
    // After the outcomes are forgotten (nothing can complete the run meanwhile) and before the
    // jobs exist, so that the worker finishing the last of them completes the run.
    if (summary.retried === 0 && (await deps.runs.transition(run, "in_progress")) !== null)
      await mirrorRunState(deps.store, run, { state: "in_progress", reason: "", updatedAt: Date.now() }).catch(() => {});
    await deps.queues.request.addBulk(
      ready.map((p) =>
        requestJob(
          run,
          { key: p.item, id: p.record.id!, image: p.image, question: p.question, answer: p.answer, line: p.record.line! },
          meta.settings,
        ),
      ),
    );
    summary.retried += ready.length;
  }
  if (await deps.runs.completeIfDone(run))
    await mirrorRunState(deps.store, run, { state: "completed", reason: "", updatedAt: Date.now() }).catch(() => {});
  return summary;
}
