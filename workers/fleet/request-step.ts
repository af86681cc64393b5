/**
 * The request job: one item's search, driven as a BullMQ step job.
 *
 * Each run of the processor reads the search state from the job's data and loops:
 *
 *   work = next(state)
 *   done        → write runs/<run>/results/<item>.json, record the outcome, complete
 *   (a retrace of swires is one more step like any other: new children under the same job)
 *   otherwise   → read the children's results kept by the parent; if every request of this
 *                 work has one, state = apply(state, results), save it, loop; if some are
 *                 missing, add them as child jobs (deterministic ids) and wait for them
 *                 (moveToWaitingChildren + WaitingChildrenError); the job runs again when
 *                 they have all finished.
 *
 * Nothing here depends on having run before: a step that crashed anywhere re-runs from the
 * saved state, finds the children it already added (same ids, so BullMQ adds nothing twice)
 * or their results, and goes on. A child that failed for good fails the item with its reason.
 */
import { WaitingChildrenError, type Job } from "bullmq";
import type { Logger } from "../../shared/io/logging.ts";
import type { StagebeamMetrics } from "../../shared/io/metrics.ts";
import { apply, next, parseSearchState, type SearchState } from "../../shared/core/search/index.ts";
import type { GenerateRequest, JudgeRequest, SearchResult, VerifyRequest } from "../../shared/core/search/types.ts";
import { failureKey, resultKey, type S3Store } from "../../shared/io/storage/s3-store.ts";
import { badInput, classify, FleetError, parseReason } from "./errors.ts";
import { workIdOf } from "./ids.ts";
import { generateJobs, judgeJobs, verifyJobs } from "./jobs.ts";
import type { RunLedger } from "./ledger.ts";
import {
  ChildReturnSchema,
  parseJobData,
  RequestJobDataSchema,
  type FleetQueues,
  type RequestJobData,
  type RequestTrace,
  type WorkTiming,
} from "./protocol.ts";
import { isCorrect, RECORD_VERSION, type FailureRecord, type ResultRecord } from "./records.ts";

export interface StepDeps {
  queues: Pick<FleetQueues, "generate" | "judge" | "verify">;
  store: S3Store;
  ledger: RunLedger;
  metrics: StagebeamMetrics;
  model: { id: string; digest: string };
  /** This worker's name, recorded in results and timings. */
  worker: string;
  logger: Logger;
  now?: () => number;
}

export type RequestReturn = { status: "done"; answer: string | null; correct: boolean | null } | { status: "already-done" };

/** The stage label of a step for metrics: a stage name (a retraced one too), `answer`, or `sentence`. */
export function stageLabel(stepLabel: string): string {
  return stepLabel.startsWith("sentence") ? "sentence" : stepLabel.replace(/ \(retrace \d+\)$/, "");
}

interface Children {
  values: Map<string, unknown>;
  failures: Map<string, string>;
}

async function readChildren(job: Job, run: string): Promise<Children> {
  const [values, failures] = await Promise.all([job.getChildrenValues(), job.getIgnoredChildrenFailures()]);
  // Keys are `<prefix>:<queue>:<job id>`; our job ids never hold ':'.
  const workId = (key: string) => workIdOf(run, key.slice(key.lastIndexOf(":") + 1));
  const out: Children = { values: new Map(), failures: new Map() };
  for (const [key, v] of Object.entries(values ?? {})) {
    const id = workId(key);
    if (id !== undefined) out.values.set(id, v);
  }
  for (const [key, reason] of Object.entries(failures ?? {})) {
    const id = workId(key);
    if (id !== undefined) out.failures.set(id, String(reason));
  }
  return out;
}

export async function runRequestStep(job: Job, token: string, deps: StepDeps): Promise<RequestReturn> {
  const now = deps.now ?? Date.now;
  const data = parseJobData(RequestJobDataSchema, job.data, "request");
  const { run, item } = data;
  let state: SearchState;
  try {
    state = parseSearchState(data.state);
  } catch (err) {
    throw badInput("bad-params", (err as Error).message);
  }
  let trace: RequestTrace = data.trace;

  if (trace.startedAt === null) {
    // The first run of this request. If an earlier job for the item already wrote its result
    // (the producer's record of it was lost in a crash, say), nothing is done twice.
    if (await deps.store.exists(resultKey(run, item.key))) {
      deps.logger.info({ run, item: item.key }, "result already in S3; not processing the item again");
      return { status: "already-done" };
    }
    trace = { ...trace, startedAt: now() };
  }

  const save = () => job.updateData({ ...data, state, trace } satisfies RequestJobData);

  for (;;) {
    const work = next(state);
    if (work.kind === "done") return finish(job, data, state, work.result, trace, deps, now);

    const children = await readChildren(job, run);
    const failed = work.requests.find((r) => children.failures.has(r.id));
    if (failed) {
      const { code, message } = parseReason(children.failures.get(failed.id)!);
      throw new FleetError(code, `${work.kind} ${failed.id} failed: ${message}`, true);
    }

    const missing = work.requests.filter((r) => !children.values.has(r.id));
    if (missing.length === 0) {
      const timings: WorkTiming[] = [];
      const results = work.requests.map((r) => {
        const parsed = ChildReturnSchema.safeParse(children.values.get(r.id));
        if (!parsed.success) throw badInput("bad-result", `${work.kind} ${r.id} returned an invalid value`);
        const { meta } = parsed.data;
        timings.push({ id: r.id, kind: work.kind, worker: meta.worker, startedAt: meta.startedAt, ms: meta.ms });
        if (!trace.models.includes(meta.model)) trace = { ...trace, models: [...trace.models, meta.model] };
        return parsed.data.result as never;
      });
      const stepsBefore = state.steps.length;
      state = apply(state, results);
      trace = { ...trace, work: [...trace.work, ...timings] };
      if (state.steps.length > stepsBefore) {
        const label = state.steps[state.steps.length - 1]!.label;
        const finishedAt = now();
        const startedAt = trace.stepStartedAt ?? finishedAt;
        const seconds = Math.max(0, finishedAt - startedAt) / 1000;
        deps.metrics.stageLatency.observe({ stage: stageLabel(label) }, seconds);
        trace = {
          ...trace,
          steps: [...trace.steps, { label, startedAt, finishedAt, seconds, work: trace.work }],
          work: [],
          stepStartedAt: null,
        };
      }
      await save();
      continue;
    }

    if (trace.stepStartedAt === null) trace = { ...trace, stepStartedAt: now() };
    await save();
    const parent = { id: job.id!, queue: job.queueQualifiedName };
    if (work.kind === "generate") await deps.queues.generate.addBulk(generateJobs(data, missing as GenerateRequest[], parent));
    else if (work.kind === "judge") await deps.queues.judge.addBulk(judgeJobs(data, missing as JudgeRequest[], parent));
    else await deps.queues.verify.addBulk(verifyJobs(data, missing as VerifyRequest[], parent));
    if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
    // Every child finished before we could wait: read their results and go on.
  }
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
  await deps.store.putJson(resultKey(run, item.key), record);
  const outcome = correct === null ? "d" : correct ? "c" : "w";
  if (await deps.ledger.recordOutcome(run, item.key, outcome, result.counts.generatedTokens)) {
    deps.metrics.itemsCompleted.inc();
  }
  deps.logger.debug({ run, item: item.key, job: job.id, answer: result.answer, correct }, "item done");
  return { status: "done", answer: result.answer, correct };
}

/**
 * Records a request that failed for good: runs/<run>/failed/<item>.json, the ledger and the
 * failure counter. Data that cannot even be read is only logged (no item to record it against).
 */
export async function recordRequestFailure(
  job: Job,
  err: unknown,
  deps: Pick<StepDeps, "store" | "ledger" | "metrics" | "worker" | "logger">,
): Promise<void> {
  const parsed = RequestJobDataSchema.safeParse(job.data);
  const c = classify(err);
  if (!parsed.success) {
    deps.logger.error({ job: job.id, reason: c.code, err: c.message }, "request job with unreadable data failed");
    return;
  }
  const { run, item } = parsed.data;
  let stepsDone: number | undefined;
  try {
    stepsDone = parseSearchState(parsed.data.state).steps.length;
  } catch {
    stepsDone = undefined;
  }
  const record: FailureRecord = {
    kind: "failure",
    version: RECORD_VERSION,
    run,
    id: item.id,
    item: item.key,
    line: item.line,
    stage: "fleet",
    reason: c.code,
    message: c.message,
    field: null,
    input: { image: item.image, question: item.question, answer: item.answer },
    at: new Date().toISOString(),
    ...(stepsDone !== undefined ? { stepsDone } : {}),
    attempts: job.attemptsMade + 1,
    worker: deps.worker,
  };
  await deps.store.putJson(failureKey(run, item.key), record);
  if (await deps.ledger.recordOutcome(run, item.key, `f:${c.code}`)) deps.metrics.itemsFailed.inc({ reason: c.code });
  deps.logger.warn({ run, item: item.key, reason: c.code, err: c.message }, "item failed");
}
