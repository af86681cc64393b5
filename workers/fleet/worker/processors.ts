/**
 * The worker's job processors, one a queue: a request step (its failure recorded when it is
 * final), a generate, judge or verify child (every request of one work submitted together, so
 * the item cache's coalescer hands them to the host as one call), and a detached run's feed.
 */
import { DelayedError, WaitingChildrenError, WaitingError, type Job } from "bullmq";
import {
  type ChildReturn,
  classify,
  FeedJobDataSchema,
  type FleetQueues,
  GenerateJobDataSchema,
  JudgeJobDataSchema,
  type ModelHost,
  parseJobData,
  type QueueName,
  retryDelay,
  toJobError,
  type VerifierHost,
  VerifyJobDataSchema,
} from "../protocol/index.ts";
import { feedRun } from "../feed/index.ts";
import type { ItemCache } from "./item-cache.ts";
import { assertRunGoesOn, recordRequestFailure, runRequestStep, type StepDeps } from "./request-step.ts";

/** When the failure record of a failed item cannot be written (S3 down), try again this much later. */
const RECORD_RETRY_MS = 15_000;

/** What the processors of one worker process share. */
export interface WorkerContext {
  deps: StepDeps;
  queues: FleetQueues;
  cache: ItemCache;
  host: ModelHost | null;
  verifier: VerifierHost | null;
  /** Aborted when the worker stops: a feeder hands its run back. */
  feeding: AbortSignal;
}

export async function processRequest(job: Job, token: string, { deps }: WorkerContext) {
  try {
    return await runRequestStep(job, token, deps);
  } catch (err) {
    if (err instanceof WaitingChildrenError || err instanceof WaitingError || err instanceof DelayedError) throw err;
    const c = classify(err);
    const final = retryDelay(deps.retryPolicy, c, job.attemptsMade + 1) === null;
    if (!final) {
      deps.logger.warn(
        { job: job.id, reason: c.code, err: c.message, attempt: job.attemptsMade + 1 },
        "request step failed; retrying",
      );
      throw toJobError(err);
    }
    try {
      await recordRequestFailure(job, err, deps);
    } catch (recordErr) {
      // Never let an item end without a record: try the whole step again later.
      deps.logger.error({ job: job.id, err: (recordErr as Error).message }, "could not record a failed item; retrying later");
      await job.moveToDelayed(Date.now() + RECORD_RETRY_MS, token);
      throw new DelayedError();
    }
    throw toJobError(err);
  }
}

/** Runs every request of one child job at once and returns their results with the job's timing. */
async function runChild<R extends { id: string }>(
  requests: readonly R[],
  worker: string,
  digest: string,
  each: (request: R) => Promise<unknown>,
): Promise<ChildReturn> {
  const startedAt = Date.now();
  const results = await Promise.all(requests.map(each));
  return {
    results: Object.fromEntries(requests.map((r, i) => [r.id, results[i]])),
    meta: { worker, model: digest, startedAt, ms: Date.now() - startedAt },
  };
}

export async function processGenerate(job: Job, _token: string, { deps, cache, host }: WorkerContext): Promise<ChildReturn> {
  try {
    const data = parseJobData(GenerateJobDataSchema, job.data, "generate");
    await assertRunGoesOn(deps.runs, data.run);
    return await runChild(data.requests, deps.worker, host!.digest, async (request) => {
      const result = await cache.generate(data.item, data.judgeMode, request);
      deps.metrics.tokensGenerated.inc(typeof result?.tokens === "number" && result.tokens > 0 ? result.tokens : 0);
      return result;
    });
  } catch (err) {
    throw toJobError(err);
  }
}

export async function processJudge(job: Job, _token: string, { deps, cache, host }: WorkerContext): Promise<ChildReturn> {
  try {
    const data = parseJobData(JudgeJobDataSchema, job.data, "judge");
    await assertRunGoesOn(deps.runs, data.run);
    return await runChild(data.requests, deps.worker, host!.digest, async (request) => {
      const result = await cache.judge(data.item, data.judgeMode, request);
      if (
        result &&
        (result.verdict === 1 || result.verdict === 2 || result.verdict === "correct" || result.verdict === "incorrect")
      ) {
        deps.metrics.judgeDecisions.inc({ stage: request.template, verdict: String(result.verdict) });
      }
      return result;
    });
  } catch (err) {
    throw toJobError(err);
  }
}

export async function processVerify(job: Job, _token: string, { deps, cache, verifier }: WorkerContext): Promise<ChildReturn> {
  try {
    const data = parseJobData(VerifyJobDataSchema, job.data, "verify");
    return await runChild(data.requests, deps.worker, verifier!.digest, (request) => cache.verify(data.item, request));
  } catch (err) {
    throw toJobError(err);
  }
}

export async function processFeed(job: Job, token: string, { deps, queues, feeding }: WorkerContext) {
  const { run } = parseJobData(FeedJobDataSchema, job.data, "feed");
  const { store, ledger, runs, logger } = deps;
  const summary = await feedRun(run, { queues, store, ledger, runs, logger }, { localImages: false, signal: feeding });
  logger.info({ run, ...summary }, summary.interrupted ? "feeder stopped; handing the run back" : "feeder done");
  if (summary.interrupted) {
    // Another worker resumes from the cursor.
    await job.moveToWait(token);
    throw new WaitingError();
  }
  return { state: summary.state, lines: summary.resumedAt + summary.lines };
}

/** The processor of each queue. */
export const PROCESSORS = {
  request: processRequest,
  generate: processGenerate,
  judge: processJudge,
  verify: processVerify,
  feed: processFeed,
} satisfies Record<QueueName, (job: Job, token: string, ctx: WorkerContext) => Promise<unknown>>;
