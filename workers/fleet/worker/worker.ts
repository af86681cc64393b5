/**
 * The fleet worker: one process per GPU, a model host and/or a verifier host, and a BullMQ
 * worker per queue it serves.
 *
 *   request   steps items' searches (cheap: Redis, S3 and the state machine); every worker
 *   generate  runs candidate generations on the model                      (policy workers)
 *   judge     runs comparisons and REASONING checks on the model           (policy workers)
 *   verify    scores candidates on the process verifier                    (verifier workers)
 *   feed      streams a detached run's manifest into the request queue (feed/feeder.ts), one at a time
 *
 * A worker may hold both models; one that holds only the verifier scales apart from the
 * policy workers on the verify queue's depth.
 *
 * Work of a cancelled or failed run is dropped before it starts (request-step.ts).
 *
 * Each BullMQ worker runs up to `concurrency` jobs at once; concurrent generate and judge jobs
 * are what lets the host batch many sequences into one decoder call. Open items are cached
 * (image fetched once per worker per item).
 *
 * `stop()` stops taking work at once, lets running jobs finish for a grace period, then hands
 * whatever still runs back to its queue (moveToWait) so another worker picks it up now rather
 * than after the lock expires. A request step handed back re-runs from its saved state.
 */
import { hostname } from "node:os";
import { DelayedError, MetricsTime, WaitingChildrenError, WaitingError, Worker, type Job, type MinimalJob } from "bullmq";
import type { Logger } from "../../../shared/io/logging.ts";
import type { StagebeamMetrics } from "../../../shared/io/metrics.ts";
import type { S3Store } from "../../../shared/io/storage/s3-store.ts";
import {
  bullConnection,
  type ChildReturn,
  classify,
  connectRedis,
  FeedJobDataSchema,
  FleetError,
  type FleetQueues,
  GenerateJobDataSchema,
  jobFailure,
  JudgeJobDataSchema,
  type ModelHost,
  openQueues,
  parseJobData,
  QUEUES,
  type RedisTarget,
  retryDelay,
  retryPolicy,
  toJobError,
  type VerifierHost,
  VerifyJobDataSchema,
} from "../protocol/index.ts";
import { s3ImageFetcher } from "./images.ts";
import { ItemCache } from "./item-cache.ts";
import { feedRun } from "../feed/index.ts";
import { RunLedger, RunRegistry } from "../books/index.ts";
import { loadConfig } from "../../../shared/io/config.ts";
import { assertRunGoesOn, recordRequestFailure, runRequestStep, type StepDeps } from "./request-step.ts";

export const DEFAULT_LOCK_DURATION_MS = 120_000;
export const DEFAULT_GRACE_MS = 30_000;
/** When the failure record of a failed item cannot be written (S3 down), try again this much later. */
const RECORD_RETRY_MS = 15_000;

export interface FleetWorkerOptions {
  redisUrl: string;
  /** `redisUrl` is a seed node of a Redis Cluster (REDIS_CLUSTER). */
  redisCluster?: boolean;
  /** Hash-tagged BullMQ prefix shared by every queue ({sb}). */
  prefix: string;
  store: S3Store;
  /** The policy, for generate and judge jobs; absent on a worker that holds only the verifier. */
  host?: ModelHost | null;
  /** The process verifier, for verify jobs. */
  verifier?: VerifierHost | null;
  metrics: StagebeamMetrics;
  logger: Logger;
  /** Jobs of each queue this process runs at once (WORKER_CONCURRENCY). */
  concurrency: number;
  /** BullMQ lock duration: longer than the slowest single job can starve the event loop. */
  lockDurationMs?: number;
  /** Open items kept per process. */
  cacheItems?: number;
  /** Name recorded on jobs and in results (default host-pid). */
  name?: string;
  /** Total backoff for transient failures (WORKER_RETRY_BUDGET_SECONDS; default: that variable's default). */
  retryBudgetSeconds?: number;
}

export interface FleetWorker {
  name: string;
  cache: ItemCache;
  ledger: RunLedger;
  queues: FleetQueues;
  /** Jobs running now. */
  active(): number;
  /** Resolves when Redis answers a PING on this worker's connection (a readiness check). */
  pingRedis(): Promise<void>;
  /** Stop taking work; finish within graceMs or hand the rest back. Idempotent. */
  stop(opts?: { graceMs?: number }): Promise<{ handedBack: number }>;
  /** While stopping: end the grace period now (hand back what still runs). */
  hurry(): void;
}

interface Tracked {
  job: Job;
  token: string;
  handBack(err: Error): void;
}

export async function startFleetWorker(opts: FleetWorkerOptions): Promise<FleetWorker> {
  const { metrics, logger, store } = opts;
  const host = opts.host ?? null;
  const verifier = opts.verifier ?? null;
  const served = host ?? verifier;
  if (served === null) throw new Error("a fleet worker needs a model host, a verifier host, or both");
  const name = opts.name ?? `${hostname()}-${process.pid}`;
  const lockDuration = opts.lockDurationMs ?? DEFAULT_LOCK_DURATION_MS;
  const policy = retryPolicy(opts.retryBudgetSeconds ?? loadConfig({}, ["worker"]).worker.retryBudgetSeconds);
  const target: RedisTarget = { url: opts.redisUrl, cluster: opts.redisCluster ?? false };
  const queues = openQueues(target, opts.prefix);
  const redis = connectRedis(target, { maxRetriesPerRequest: 5 });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis connection error"));
  const ledger = new RunLedger(redis, opts.prefix);
  const runs = new RunRegistry(redis, opts.prefix);
  const cache = new ItemCache({
    host,
    verifier,
    fetchImage: s3ImageFetcher(store, { s3RequestSeconds: metrics.s3RequestSeconds, s3Errors: metrics.s3Errors }),
    capacity: opts.cacheItems ?? 64,
  });
  const deps: StepDeps = {
    queues,
    store,
    ledger,
    runs,
    metrics,
    model: { id: served.modelId, digest: served.digest },
    worker: name,
    logger,
    retryPolicy: policy,
  };

  let stopping = false;
  const active = new Map<string, Tracked>();

  /** Wraps a processor: refuses work once stopping, and lets stop() hand a running job back. */
  const tracked =
    <R>(queue: string, fn: (job: Job, token: string) => Promise<R>) =>
    async (job: Job, token?: string): Promise<R> => {
      if (token === undefined) throw new Error("BullMQ gave no lock token");
      if (stopping) {
        await job.moveToWait(token);
        throw new WaitingError();
      }
      const key = `${queue}/${job.id}`;
      let handBack!: (err: Error) => void;
      const handedBack = new Promise<never>((_, reject) => (handBack = reject));
      handedBack.catch(() => {});
      active.set(key, { job, token, handBack });
      try {
        return await Promise.race([fn(job, token), handedBack]);
      } finally {
        active.delete(key);
      }
    };

  const processRequest = async (job: Job, token: string) => {
    try {
      return await runRequestStep(job, token, deps);
    } catch (err) {
      if (err instanceof WaitingChildrenError || err instanceof WaitingError || err instanceof DelayedError) throw err;
      const c = classify(err);
      const final = retryDelay(policy, c, job.attemptsMade + 1) === null;
      if (!final) {
        logger.warn(
          { job: job.id, reason: c.code, err: c.message, attempt: job.attemptsMade + 1 },
          "request step failed; retrying",
        );
        throw toJobError(err);
      }
      try {
        await recordRequestFailure(job, err, deps);
      } catch (recordErr) {
        // Never let an item end without a record: try the whole step again later.
        logger.error({ job: job.id, err: (recordErr as Error).message }, "could not record a failed item; retrying later");
        await job.moveToDelayed(Date.now() + RECORD_RETRY_MS, token);
        throw new DelayedError();
      }
      throw toJobError(err);
    }
  };

  /**
   * A child job: every request of one work, submitted together so that the item cache's
   * coalescer hands them to the model host as one call.
   */
  const runChild = async <R extends { id: string }>(
    requests: readonly R[],
    digest: string,
    each: (request: R) => Promise<unknown>,
  ): Promise<ChildReturn> => {
    const startedAt = Date.now();
    const results = await Promise.all(requests.map(each));
    return {
      results: Object.fromEntries(requests.map((r, i) => [r.id, results[i]])),
      meta: { worker: name, model: digest, startedAt, ms: Date.now() - startedAt },
    };
  };

  const processGenerate = async (job: Job): Promise<ChildReturn> => {
    try {
      const data = parseJobData(GenerateJobDataSchema, job.data, "generate");
      await assertRunGoesOn(runs, data.run);
      return await runChild(data.requests, host!.digest, async (request) => {
        const result = await cache.generate(data.item, data.judgeMode, request);
        metrics.tokensGenerated.inc(typeof result?.tokens === "number" && result.tokens > 0 ? result.tokens : 0);
        return result;
      });
    } catch (err) {
      throw toJobError(err);
    }
  };

  const processJudge = async (job: Job): Promise<ChildReturn> => {
    try {
      const data = parseJobData(JudgeJobDataSchema, job.data, "judge");
      await assertRunGoesOn(runs, data.run);
      return await runChild(data.requests, host!.digest, async (request) => {
        const result = await cache.judge(data.item, data.judgeMode, request);
        if (
          result &&
          (result.verdict === 1 || result.verdict === 2 || result.verdict === "correct" || result.verdict === "incorrect")
        ) {
          metrics.judgeDecisions.inc({ stage: request.template, verdict: String(result.verdict) });
        }
        return result;
      });
    } catch (err) {
      throw toJobError(err);
    }
  };

  const processVerify = async (job: Job): Promise<ChildReturn> => {
    try {
      const data = parseJobData(VerifyJobDataSchema, job.data, "verify");
      return await runChild(data.requests, verifier!.digest, (request) => cache.verify(data.item, request));
    } catch (err) {
      throw toJobError(err);
    }
  };

  const feeding = new AbortController();
  const processFeed = async (job: Job, token: string) => {
    const { run } = parseJobData(FeedJobDataSchema, job.data, "feed");
    const summary = await feedRun(run, { queues, store, ledger, runs, logger }, { localImages: false, signal: feeding.signal });
    logger.info({ run, ...summary }, summary.interrupted ? "feeder stopped; handing the run back" : "feeder done");
    if (summary.interrupted) {
      // Another worker resumes from the cursor.
      await job.moveToWait(token);
      throw new WaitingError();
    }
    return { state: summary.state, lines: summary.resumedAt + summary.lines };
  };

  const workerConnection = bullConnection(target, true);
  const common = {
    connection: workerConnection.connection,
    prefix: opts.prefix,
    concurrency: opts.concurrency,
    lockDuration,
    stalledInterval: Math.min(30_000, lockDuration),
    maxStalledCount: 2,
    // Counts of completed and failed jobs per queue, which `stagebeam exporter` exports as
    // bullmq_job_completed_total / bullmq_job_failed_total (the data points kept are per minute).
    metrics: { maxDataPoints: MetricsTime.ONE_HOUR },
    name,
    settings: {
      // Every job of every queue asks for this strategy (protocol/protocol.ts); -1 tells BullMQ to fail it.
      backoffStrategy: (attemptsMade: number, _type?: string, err?: Error, job?: MinimalJob) => {
        const failure = jobFailure(err);
        const delay = retryDelay(policy, failure, attemptsMade);
        if (delay !== null) metrics.retries.inc({ kind: job?.queueName ?? "unknown", reason: failure.code });
        return delay ?? -1;
      },
    },
  };
  const workers = [
    new Worker(QUEUES.request, tracked(QUEUES.request, processRequest), common),
    ...(host === null
      ? []
      : [
          new Worker(QUEUES.generate, tracked(QUEUES.generate, processGenerate), common),
          new Worker(QUEUES.judge, tracked(QUEUES.judge, processJudge), common),
        ]),
    ...(verifier === null ? [] : [new Worker(QUEUES.verify, tracked(QUEUES.verify, processVerify), common)]),
    new Worker(QUEUES.feed, tracked(QUEUES.feed, processFeed), { ...common, concurrency: 1 }),
  ];
  const [requestWorker] = workers;
  for (const w of workers) {
    w.on("error", (err) => logger.error({ queue: w.name, err: err.message }, "worker error"));
    // Zero from the start, so that the first stall is an increase that rate() sees.
    metrics.jobsStalled.inc({ queue: w.name }, 0);
    w.on("stalled", (jobId) => {
      metrics.jobsStalled.inc({ queue: w.name });
      logger.warn({ queue: w.name, job: jobId }, "job stalled: its lock expired while it ran");
    });
  }
  // A request that kept stalling is failed by BullMQ without running the processor: record it here.
  requestWorker!.on("failed", (job, err) => {
    if (!job?.deferredFailure || err.message !== job.deferredFailure) return;
    recordRequestFailure(job, new FleetError("stalled", err.message, true), deps).catch((e: Error) =>
      logger.error({ job: job.id, err: e.message }, "could not record a stalled item"),
    );
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  logger.info(
    {
      worker: name,
      concurrency: opts.concurrency,
      lockDuration,
      queues: workers.map((w) => w.name),
      ...(host ? { model: host.modelId, digest: host.digest } : {}),
      ...(verifier ? { verifier: verifier.modelId, verifierDigest: verifier.digest } : {}),
    },
    "fleet worker started",
  );

  let stopped: Promise<{ handedBack: number }> | undefined;
  let endGrace: (() => void) | undefined;
  let hurried = false;
  const hurry = () => {
    hurried = true;
    endGrace?.();
  };
  const stop = ({ graceMs = DEFAULT_GRACE_MS }: { graceMs?: number } = {}) =>
    (stopped ??= (async () => {
      stopping = true;
      feeding.abort();
      logger.info({ worker: name, active: active.size, graceMs }, "stopping: no new work; finishing running jobs");
      const closing = Promise.all(workers.map((w) => w.close()));
      let timer: NodeJS.Timeout | undefined;
      const expired = await Promise.race([
        closing.then(() => false),
        new Promise<boolean>((r) => {
          endGrace = () => r(true);
          timer = setTimeout(endGrace, hurried ? 0 : graceMs);
        }),
      ]);
      clearTimeout(timer);
      let handedBack = 0;
      if (expired) {
        for (const t of [...active.values()]) {
          try {
            await t.job.moveToWait(t.token);
            handedBack++;
          } catch (err) {
            logger.warn({ job: t.job.id, err: (err as Error).message }, "could not hand a job back; its lock will expire");
          }
          t.handBack(new WaitingError());
        }
        logger.info({ worker: name, handedBack }, "grace period over; handed running jobs back");
        await Promise.race([closing, new Promise((r) => setTimeout(r, 10_000).unref())]);
      }
      cache.closeAll();
      await queues.close().catch(() => {});
      workerConnection.close();
      redis.disconnect();
      return { handedBack };
    })());

  const pingRedis = async () => {
    await redis.ping();
  };
  return { name, cache, ledger, queues, active: () => active.size, pingRedis, stop, hurry };
}
