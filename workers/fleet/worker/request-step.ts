/**
 * The request job: one item's search, driven as a BullMQ step job.
 *
 * Each run of the processor reads the search state from the job's data and loops:
 *
 *   work = next(state)
 *   done        → write runs/<run>/results/<item>.json, record the outcome, complete
 *   (a retrace of swires is one more step like any other: new children under the same job)
 *   otherwise   → read the children's returns kept by the parent; if this work's child
 *                 (a stretch of the search from here: the step's works on one model,
 *                 stretch.ts) has returned, state = the state it reached, loop; if not, save
 *                 the state, add the child (deterministic id) carrying it and wait for it
 *                 (moveToWaitingChildren + WaitingChildrenError); the job runs again when it
 *                 has finished.
 *
 * Each turn of the loop decides first (step-decision.ts: no I/O), then runs the decision (take
 * the child's state, add or retry the child and wait, write the result), then records it in the
 * trace and the state.
 *
 * Nothing here depends on having run before: a step that crashed anywhere re-runs from the
 * saved state, finds the child it already added (same id, so BullMQ adds nothing twice)
 * or its return, and goes on. A child that failed for good fails the item with its reason.
 */
import { WaitingChildrenError, type Job, type Queue } from "bullmq";
import type { Logger } from "../../../shared/io/logging.ts";
import type { StagebeamMetrics } from "../../../shared/io/metrics.ts";
import { apply, createSearch, next, parseSearchState, type SearchState } from "../../../shared/core/search/index.ts";
import { paramsFor } from "../../../shared/core/search/settings.ts";
import type { SearchResult } from "../../../shared/core/search/types.ts";
import { resultKey, type S3Store } from "../../../shared/io/storage/s3-store.ts";
import {
  badInput,
  childJob,
  childJobId,
  classify,
  fieldOfReason,
  FleetError,
  fleetFailure,
  type FleetQueues,
  isCorrect,
  packState,
  parseJobData,
  putFailureRecord,
  RECORD_VERSION,
  RequestEnvelopeSchema,
  type RequestJobData,
  RequestJobDataSchema,
  type RequestTrace,
  type ResultRecord,
  ResultRecordSchema,
  type RetryPolicy,
  unpackState,
} from "../protocol/index.ts";
import { RunKeeper, type RunLedger, type RunRegistry } from "../books/index.ts";
import { childOf, type Children, decideStep, traceApplied } from "./step-decision.ts";

const NO_CHILDREN: Children = { values: new Map(), failures: new Map() };

export interface StepDeps {
  queues: Pick<FleetQueues, "generate" | "judge" | "verify">;
  store: S3Store;
  ledger: RunLedger;
  runs: RunRegistry;
  metrics: StagebeamMetrics;
  model: { id: string; digest: string };
  /** This worker's name, recorded in results and timings. */
  worker: string;
  logger: Logger;
  retryPolicy: RetryPolicy;
  now?: () => number;
}

export type RequestReturn = { status: "done"; answer: string | null; correct: boolean | null } | { status: "already-done" };

/** The stage label of a step for metrics: a stage name (a retraced one too), `answer`, or `sentence`. */
export function stageLabel(stepLabel: string): string {
  return stepLabel.startsWith("sentence") ? "sentence" : stepLabel.replace(/ \(retrace \d+\)$/, "");
}

/**
 * The wanted child's result, or its failure when it has no result (a child that failed for
 * good has none). Only that child's entry is read: the parent's hash of results grows by one
 * child a step, and reading it whole every step sent the item's every earlier result back.
 */
async function readChild(job: Job, queue: Queue, run: string, wanted: string): Promise<Children> {
  const client = await queue.getBackend().client;
  const parent = `${job.queueQualifiedName}:${job.id}`;
  const child = `${queue.qualifiedName}:${childJobId(run, wanted)}`;
  const out: Children = { values: new Map(), failures: new Map() };
  const value = await client.hget(`${parent}:processed`, child);
  if (value !== null) {
    out.values.set(wanted, JSON.parse(value));
    return out;
  }
  const reason = await client.hget(`${parent}:failed`, child);
  if (reason !== null) out.failures.set(wanted, reason);
  return out;
}

/** Work of a cancelled or failed run is dropped, at the latest one step after the run stopped. */
export async function assertRunGoesOn(runs: RunRegistry, run: string): Promise<void> {
  let state = await runs.state(run);
  // Looked at again before anything is dropped: a cancelled run that `retry --reason cancelled`
  // continued is in progress again, whatever this worker's cached state says.
  if (state === "cancelled" || state === "failed") state = await runs.state(run, 0);
  if (state === "cancelled") throw badInput("cancelled", `run ${run} was cancelled`);
  if (state === "failed") throw badInput("run-failed", `run ${run} has failed; its remaining work is dropped`);
}

/** The item's search state: saved in the job, or (first step) created from the run's settings. */
async function searchStateOf(data: RequestJobData, runs: RunRegistry): Promise<SearchState> {
  try {
    if (data.state !== null) return parseSearchState(unpackState(data.state));
    const settings = await runs.settings(data.run);
    if (settings === null) throw badInput("bad-job", `run ${data.run} has no settings in Redis (its bookkeeping is gone)`);
    return createSearch(paramsFor(data.item.key, settings, data.item.settings));
  } catch (err) {
    if (err instanceof FleetError) throw err;
    throw badInput("bad-params", (err as Error).message);
  }
}

/** The run's keeper, through which an outcome is recorded (and a run it completes mirrored to S3). */
const keeperOf = (deps: Pick<StepDeps, "runs" | "ledger" | "store" | "logger">) =>
  new RunKeeper(deps, (run, err) => deps.logger.warn({ run, err: err.message }, "could not mirror the run's state to S3"));

export async function runRequestStep(job: Job, token: string, deps: StepDeps): Promise<RequestReturn> {
  const now = deps.now ?? Date.now;
  const data = parseJobData(RequestJobDataSchema, job.data, "request");
  const { run, item } = data;
  await assertRunGoesOn(deps.runs, run);
  let state = await searchStateOf(data, deps.runs);
  let trace: RequestTrace = data.trace ?? {
    submittedAt: job.timestamp,
    startedAt: null,
    stepStartedAt: null,
    work: [],
    steps: [],
    models: [],
    childRetries: 0,
  };

  if (trace.startedAt === null) {
    // The first run of this request. If an earlier job for the item already wrote its result
    // (the producer's record of it was lost in a crash, say), nothing is done twice.
    if (await deps.store.exists(resultKey(run, item.key))) {
      deps.logger.info({ run, item: item.key }, "result already in S3; not processing the item again");
      return countExistingResult(run, item.key, deps);
    }
    trace = { ...trace, startedAt: now() };
    await deps.ledger.markWorkStarted(run, trace.startedAt!);
  }

  const save = (packed = packState(state)) => job.updateData({ ...data, state: packed, trace } satisfies RequestJobData);

  // The wanted child's result as last read in this run; undefined: read it (again). A request
  // without a state has never added a child (the state is saved before any child is added).
  // After a step is applied, the reading (of the child just applied) stands for the next work:
  // its child can only have been added by an earlier run of this job, and one that finished is
  // found when moveToWaitingChildren says nothing is left to wait for, which reads again.
  let children: Children | undefined = data.state === null ? { values: new Map(), failures: new Map() } : undefined;
  for (;;) {
    const work = next(state);
    const childId = childOf(work);
    if (childId !== null && work.kind !== "done") children ??= await readChild(job, deps.queues[work.kind], run, childId);
    const action = decideStep(work, state, children ?? NO_CHILDREN, trace, deps.retryPolicy);
    switch (action.kind) {
      case "finish":
        return finish(job, data, state, action.result, trace, deps, now);
      case "fail":
        throw action.error;
      case "apply-none":
        state = apply(state, []);
        continue;
      case "advance": {
        const stepsBefore = state.steps.length;
        state = action.state;
        const applied = traceApplied(trace, action.child, stepsBefore, state);
        trace = applied.trace;
        for (const step of applied.steps) deps.metrics.stageLatency.observe({ stage: stageLabel(step.label) }, step.seconds);
        // Not saved here: this run saves the state with the next work's child, or writes the
        // result; a run that dies first takes the same state again (the parent keeps it).
        continue;
      }
      case "retry-child":
        if (!(await retryChild(deps.queues[action.work.kind], run, action.childId))) throw action.orFail;
        deps.metrics.retries.inc({ kind: action.work.kind, reason: action.code });
        // A child that failed on the infrastructure (its own retries spent, or its worker kept
        // dying under it) runs again, within the same budget a job's own retries have.
        trace = { ...trace, childRetries: trace.childRetries + 1 };
        await save();
        break;
      case "add-child": {
        if (trace.stepStartedAt === null) trace = { ...trace, stepStartedAt: now() };
        const packed = packState(state);
        await save(packed);
        const child = childJob(data, action.work, packed, { id: job.id!, queue: job.queueQualifiedName });
        await deps.queues[child.queue].add(child.name, child.data, child.opts);
        break;
      }
    }
    // Wait for the child; one that finished before we could wait is read again and applied.
    if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
    children = undefined;
  }
}

/** Runs a failed child job again in its parent's dependencies; false when it no longer exists. */
async function retryChild(queue: Queue, run: string, workId: string): Promise<boolean> {
  const child = await queue.getJob(childJobId(run, workId));
  if (!child) return false;
  await child.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
  return true;
}

const outcomeOf = (correct: boolean | null) => (correct === null ? "d" : correct ? "c" : "w");

/**
 * Counts an item whose result is already in S3: the ledger's record of it may be what Redis
 * lost, and recordOutcome counts an item once however often it is told.
 */
async function countExistingResult(run: string, itemKey: string, deps: StepDeps): Promise<RequestReturn> {
  const existing = await deps.store.getJson(resultKey(run, itemKey), ResultRecordSchema);
  if (existing) {
    const recorded = await keeperOf(deps).recordOutcome(run, itemKey, outcomeOf(existing.correct), {
      tokens: existing.tokens.generated,
    });
    if (recorded !== "unchanged") deps.metrics.itemsCompleted.inc();
  }
  return { status: "already-done" };
}

async function finish(
  job: Job,
  data: RequestJobData,
  state: SearchState,
  result: SearchResult,
  trace: RequestTrace,
  deps: StepDeps,
  now: () => number,
): Promise<RequestReturn> {
  const { run, item } = data;
  const finishedAt = now();
  const startedAt = trace.startedAt ?? finishedAt;
  const correct = isCorrect(result.answer, item.answer);
  const iso = (t: number) => new Date(t).toISOString();
  const record: ResultRecord = {
    kind: "result",
    version: RECORD_VERSION,
    run,
    id: item.id,
    item: item.key,
    line: item.line,
    question: item.question,
    system: item.system ?? null,
    image: item.image,
    gold: item.answer,
    answer: result.answer,
    correct,
    wellFormed: result.wellFormed,
    strategy: state.params.strategy,
    beam: state.params.beam,
    seed: state.params.seed,
    params: state.params,
    judgeMode: data.judgeMode,
    model: deps.model,
    models: trace.models,
    search: result,
    tokens: { generated: result.counts.generatedTokens },
    timings: {
      submittedAt: iso(trace.submittedAt),
      startedAt: iso(startedAt),
      finishedAt: iso(finishedAt),
      seconds: Math.max(0, finishedAt - startedAt) / 1000,
      steps: trace.steps,
    },
    worker: deps.worker,
  };
  if (!(await deps.store.putJsonIfAbsent(resultKey(run, item.key), record))) {
    // Another job for the item finished first (Redis lost this one's completion and ran it again):
    // the first result stands, and is the one counted.
    deps.logger.info({ run, item: item.key, job: job.id }, "result already in S3; kept the first one");
    return countExistingResult(run, item.key, deps);
  }
  const recorded = await keeperOf(deps).recordOutcome(run, item.key, outcomeOf(correct), {
    tokens: result.counts.generatedTokens,
  });
  if (recorded !== "unchanged") deps.metrics.itemsCompleted.inc();
  deps.logger.debug({ run, item: item.key, job: job.id, answer: result.answer, correct }, "item done");
  return { status: "done", answer: result.answer, correct };
}

/**
 * Records a request that failed for good: runs/<run>/failed/<item>.json, the ledger and the
 * failure counter. A job of another protocol version is recorded from its run and item; data
 * without even those is only logged (no item to record it against).
 */
export async function recordRequestFailure(
  job: Job,
  err: unknown,
  deps: Pick<StepDeps, "store" | "ledger" | "runs" | "metrics" | "worker" | "logger">,
): Promise<void> {
  const parsed = RequestJobDataSchema.safeParse(job.data);
  const envelope = parsed.success ? parsed : RequestEnvelopeSchema.safeParse(job.data);
  const c = classify(err);
  if (!envelope.success) {
    deps.logger.error({ job: job.id, reason: c.code, err: c.message }, "request job with unreadable data failed");
    return;
  }
  const { run, item } = envelope.data;
  let stepsDone: number | undefined;
  try {
    if (parsed.success)
      stepsDone = parsed.data.state === null ? 0 : parseSearchState(unpackState(parsed.data.state)).steps.length;
  } catch {
    stepsDone = undefined;
  }
  const record = fleetFailure(run, item, {
    reason: c.code,
    message: c.message,
    field: fieldOfReason(c.code),
    at: new Date().toISOString(),
    ...(stepsDone !== undefined ? { stepsDone } : {}),
    attempts: job.attemptsMade + 1,
    worker: deps.worker,
  });
  await putFailureRecord(deps.store, record);
  const recorded = await keeperOf(deps).recordOutcome(run, item.key, `f:${c.code}`);
  if (recorded !== "unchanged") deps.metrics.itemsFailed.inc({ reason: c.code });
  deps.logger.warn({ run, item: item.key, reason: c.code, err: c.message }, "item failed");
}
