/**
 * The worker's job processors, one a queue: a request step (its failure recorded when it is
 * final), a generate, judge or verify child (a stretch of the item's search, stretch.ts), and a
 * detached run's feed.
 */
import { DelayedError, WaitingChildrenError, WaitingError, type Job } from "bullmq";
import {
  type GenerateRequest,
  type JudgeRequest,
  next,
  parseSearchState,
  type SearchExecutor,
  type SearchState,
  type VerifyRequest,
} from "../../../shared/core/search/index.ts";
import {
  badInput,
  type ChildReturn,
  type ChildWork,
  classify,
  FeedJobDataSchema,
  type FleetQueues,
  type ModelHost,
  packState,
  parseJobData,
  type QueueName,
  retryDelay,
  StretchJobDataSchema,
  type StretchJobData,
  toJobError,
  unpackState,
  type VerifierHost,
} from "../protocol/index.ts";
import { feedRun } from "../feed/index.ts";
import type { ItemCache } from "./item-cache.ts";
import { modelOf, runStretch } from "./stretch.ts";
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

/**
 * The executor a child job runs its stretch on: the item opened on this worker (item-cache.ts),
 * each request of a work submitted at once so that the cache's coalescer hands the work to the
 * host as one call, and the work counted in the worker's metrics. Before each work it looks
 * whether the run goes on, so a stretch of a cancelled run stops within a work.
 */
function cachedExecutor(data: StretchJobData, { cache, deps }: WorkerContext): SearchExecutor {
  const { item } = data;
  const each =
    <Q, R>(run: (request: Q) => Promise<R>) =>
    async (requests: Q[]): Promise<R[]> => {
      await assertRunGoesOn(deps.runs, data.run);
      return Promise.all(requests.map(run));
    };
  return {
    generate: each(async (request: GenerateRequest) => {
      const result = await cache.generate(item, request);
      deps.metrics.tokensGenerated.inc(typeof result?.tokens === "number" && result.tokens > 0 ? result.tokens : 0);
      return result;
    }),
    judge: each(async (request: JudgeRequest) => {
      const result = await cache.judge(item, request);
      if (
        result &&
        (result.verdict === 1 || result.verdict === 2 || result.verdict === "correct" || result.verdict === "incorrect")
      ) {
        deps.metrics.judgeDecisions.inc({ stage: request.template, verdict: String(result.verdict) });
      }
      return result;
    }),
    verify: each((request: VerifyRequest) => cache.verify(item, request)),
  };
}

/** The search state a child job carries; one that does not read is bad job data. */
function stretchStart(data: StretchJobData): { state: SearchState; first: ChildWork } {
  let state: SearchState;
  try {
    state = parseSearchState(unpackState(data.state));
  } catch (err) {
    throw badInput("bad-job", `child job's search state is invalid: ${(err as Error).message}`);
  }
  const first = next(state);
  if (first.kind === "done" || first.requests.length === 0) {
    throw badInput("bad-job", `child job's search state of item ${data.item.key} waits for no work`);
  }
  return { state, first };
}

/**
 * A generate, judge or verify child job: a stretch of the item's search (stretch.ts) on the
 * model this worker holds for the work it starts with, returned as the state it reached.
 */
export async function processChild(job: Job, _token: string, ctx: WorkerContext): Promise<ChildReturn> {
  try {
    const data = parseJobData(StretchJobDataSchema, job.data, job.queueName);
    // Whether the run goes on is asked before each work of the stretch, the first included.
    const { state, first } = stretchStart(data);
    const stretch = await runStretch(state, first, cachedExecutor(data, ctx), ctx.deps.worker);
    if (next(stretch.state).kind === "done") ctx.cache.forget(data.item);
    const model = modelOf(first.kind) === "verifier" ? ctx.verifier : ctx.host;
    return { state: packState(stretch.state), work: stretch.work, steps: stretch.steps, model: model!.digest };
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
  generate: processChild,
  judge: processChild,
  verify: processChild,
  feed: processFeed,
} satisfies Record<QueueName, (job: Job, token: string, ctx: WorkerContext) => Promise<unknown>>;
