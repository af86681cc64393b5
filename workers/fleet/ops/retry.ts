/**
 * `stagebeam retry`: re-enqueues a run's failed items (all, or those failed for one reason)
 * with the run's settings. Each item's input comes from its failure record (with the item's own
 * settings and system message); a local image is staged again (it must decode now), an s3://
 * one is used where it is. The item's outcome is forgotten before its new job is added, so the
 * ledger counts it once, whichever attempt succeeds; its old request job (and its children) are
 * removed first, so that the new attempt's jobs, which have the same ids, are really added.
 *
 * Never re-enqueued: a line whose id an earlier line has (`duplicate-id`: not an item; the first
 * line holds the id, so the export keeps one output per id), a line that asks for other run
 * settings, and a bad manifest line (a missing field, say): fix the line and submit the
 * manifest again, which looks at refused lines anew.
 *
 * `--reason cancelled` continues a cancelled run: it is in progress again, its cancelled items
 * are enqueued again, and a detached run's feed job goes on from its cursor (a run fed by a
 * submit that the cancel stopped is fed on by running that submit again).
 */
import pLimit from "p-limit";
import { UsageError } from "../../../shared/core/usage-error.ts";
import { failureKey, type S3Store } from "../../../shared/io/storage/s3-store.ts";
import { ImageStager, queueFeedJob, waitForRoom } from "../feed/index.ts";
import {
  FailureRecordSchema,
  type FleetQueues,
  isReasonCode,
  REASON_CODES,
  requestJob,
  requestJobId,
} from "../protocol/index.ts";
import { RunKeeper, type RunLedger, type RunRegistry } from "../books/index.ts";

export interface RetrySummary {
  retried: number;
  /** Items left failed, each with why. */
  notRetried: { item: string; reason: string; why: string }[];
  /** Duplicate-id lines left in the error file (not items: never re-enqueued). */
  duplicates: number;
  /** A cancelled run continued: how far its manifest was fed, and whether a feed job goes on with it. */
  continued?: { fed: boolean; linesRead: number; feedJob: boolean };
}

export async function retryRun(
  run: string,
  opts: { reason?: string; signal?: AbortSignal; backlogPollMs?: number },
  deps: { queues: Pick<FleetQueues, "request" | "feed">; store: S3Store; ledger: RunLedger; runs: RunRegistry },
): Promise<RetrySummary> {
  if (opts.reason !== undefined && !isReasonCode(opts.reason))
    throw new UsageError(
      `no failure reason ${JSON.stringify(opts.reason)}; expected one of: ${Object.keys(REASON_CODES).join(", ")}`,
    );
  const meta = await deps.runs.get(run);
  if (!meta) throw new UsageError(`no run named ${JSON.stringify(run)} in Redis`);
  if (meta.state === "failed")
    throw new UsageError(
      `run ${run} is failed${meta.reason ? ` (${meta.reason})` : ""}; only items of a run that goes on can be retried`,
    );
  const keeper = new RunKeeper(deps);
  let continued: RetrySummary["continued"];
  if (meta.state === "cancelled") {
    if (opts.reason !== "cancelled")
      throw new UsageError(
        `run ${run} is cancelled; to continue it, retry its cancelled items: stagebeam retry --run ${run} --reason cancelled`,
      );
    // In progress again before its items are enqueued, so no worker drops them as cancelled.
    await keeper.uncancel(run);
    const fed = meta.fed === "1";
    if (!fed && meta.source.detached) await queueFeedJob(deps.queues, run);
    continued = { fed, linesRead: meta.cursor, feedJob: !fed && meta.source.detached };
  }
  const summary: RetrySummary = { retried: 0, notRetried: [], duplicates: 0 };
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
          if (reason === "duplicate-id") {
            summary.duplicates++;
            return null;
          }
          if (reason === "manifest-settings")
            return skip("the line asks for other run settings (strategy, beam, judge): submit it as another run");
          const record = await deps.store.getJson(failureKey(run, item), FailureRecordSchema);
          if (!record) return skip("its failure record is not in S3");
          const { image, question, answer, system, settings } = record.input;
          if (image === null || question === null || record.id === null || record.line === null)
            return skip("a bad manifest line: fix the line and submit the manifest again");
          const staged = await images.stage(image);
          if ("error" in staged) return skip(staged.error);
          return { item, record, image: staged.uri, question, answer, system, settings };
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
    if (summary.retried === 0) await keeper.move(run, "in_progress");
    await deps.queues.request.addBulk(
      ready.map((p) =>
        requestJob(
          run,
          {
            key: p.item,
            id: p.record.id!,
            image: p.image,
            question: p.question,
            answer: p.answer,
            line: p.record.line!,
            ...(p.system !== undefined ? { system: p.system } : {}),
            ...(p.settings !== undefined ? { settings: p.settings } : {}),
          },
          meta.settings,
        ),
      ),
    );
    summary.retried += ready.length;
  }
  await keeper.completeIfDone(run);
  return continued ? { ...summary, continued } : summary;
}
