/**
 * The fleet protocol over BullMQ: four queues under one hash-tagged prefix, the job data
 * each carries (zod schemas, validated on read), and the options every job is added with.
 *
 *   request   one job per item: a step job that drives the item's search state machine
 *   generate  child jobs of the policy: a stretch of the search (below) that starts with candidates
 *   judge     child jobs of the policy that start with a judge work (comparisons or REASONING checks)
 *   feed      one job per detached run: streams the run's manifest into the request queue (feed/feeder.ts)
 *   verify    child jobs whose work a verifier scores (judge mode verifier, swires), served by the
 *             workers that hold the verifier, which may hold nothing else
 *
 * A child job is a stretch of the item's search (jobs.ts: childJob, worker/stretch.ts): it
 * carries the packed search state and runs the same machine on the same executor as the
 * in-process driver, work after work, until the search is done or the next work needs the
 * other model (the verifier, or the policy after it), and returns the state it reached with a
 * timing per work and the end of each step. Under stage N=4 with the pairwise judge that is one
 * child an item, where one a work (a step's candidates, then each knock-out round) was 13:
 * BullMQ's cycle of a job (add, fetch, finish) and the parent's wake-up (fetch, read, save,
 * wait) are what Redis spends its CPU on. Items, not the candidates of one item, are what
 * spreads over the fleet.

 * Job data stays small: ids, the S3 URI of the staged image, the question, the search state
 * (accepted text, candidate texts, bracket) and timings. Never image bytes.
 *
 * Every child is added with `ignoreDependencyOnFailure`: a child that fails for good (bad
 * input, or retries exhausted) is moved to the parent's failed dependencies with its reason,
 * and the parent step runs once all children have settled. The parent then records the item
 * as failed with the child's reason, in one place with the rest of the item's bookkeeping.
 * (With `failParentOnFailure` the parent would fail inside a Lua script without running, with
 * only "child … failed" as its reason and no one to write the failure record; with
 * `continueParentOnFailure` it would run while its other children still do.)
 */
import { BACKOFF_TYPE, MAX_JOB_ATTEMPTS } from "./retry-policy.ts";
import { Queue, type JobsOptions } from "bullmq";
import { z } from "zod";
import { ITEM_ID_PATTERN, RUN_ID_PATTERN } from "../../../shared/core/ids.ts";
import { badInput } from "./errors.ts";
import { QUEUES } from "./ids.ts";
import { bullConnection, type RedisTarget } from "./redis-client.ts";
import { StepTimingSchema, WorkTimingSchema } from "./timings.ts";

export { StepTimingSchema, WorkTimingSchema, type StepTiming, type WorkTiming } from "./timings.ts";
import { JUDGE_MODES } from "../../../shared/core/search/settings.ts";
import { ItemSettingsSchema } from "../../../shared/core/search/params.ts";

/**
 * 2: a child job carries all the requests of one work of the search (`requests`), not one.
 * 3: an item may carry its own settings (`settings`) and a system message (`system`), and a
 * generate request its own `temperature` and `topP`; a worker of 2 would drop them unseen and
 * answer with the run's, so it must refuse these jobs instead.
 * 4: a request job carries its search state packed (packed-state.ts), not as JSON.
 * 5: a child job carries the packed search state and runs a stretch of it (`StretchJobData`),
 * returning the state it reached (`ChildReturn`), instead of one work's requests and results;
 * and the judge mode rides in each judge request (`mode`), not beside the work: a child job
 * carries none, and a worker opens an item once for every judge mode.
 */
export const PROTOCOL_VERSION = 5;

/**
 * Cap of each queue's events stream. Nothing in stagebeam reads the streams (no QueueEvents,
 * no waitUntilFinished) and BullMQ cannot be told not to write them, so they are trimmed to
 * nothing: with MAXLEN ~ 0 a stream keeps at most the entries of its last radix node (100),
 * not thousands of entries a queue, and Redis's memory no longer grows with the events.
 */
export const EVENTS_MAX_LEN = 0;

const RunIdSchema = z.string().regex(RUN_ID_PATTERN);
const ItemKeySchema = z.string().regex(ITEM_ID_PATTERN);
const S3UriSchema = z.string().regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+$/);
const JudgeModeSchema = z.enum(JUDGE_MODES);

/** What a child job needs to open the item on any worker. */
export const ChildItemSchema = z.object({
  key: ItemKeySchema,
  image: S3UriSchema,
  question: z.string().min(1),
  /** A system message for the chat template (an OpenAI batch line's). */
  system: z.string().optional(),
});
export type ChildItem = z.infer<typeof ChildItemSchema>;

export const RequestItemSchema = ChildItemSchema.extend({
  /** The id as the user wrote it in the manifest. */
  id: z.string().min(1),
  /** The gold answer, when the manifest gave one. */
  answer: z.string().nullable(),
  /** Manifest line (1-based). */
  line: z.number().int().nonnegative(),
  /** The item's own seed, stage cap, temperature, top_p (an OpenAI batch line's), over the run's settings. */
  settings: ItemSettingsSchema.optional(),
});
export type RequestItem = z.infer<typeof RequestItemSchema>;

export const RequestTraceSchema = z.object({
  submittedAt: z.number(),
  /** First step run of the request. */
  startedAt: z.number().nullable(),
  /** When the current search step first dispatched work. */
  stepStartedAt: z.number().nullable(),
  /** Timings of the current step's work so far. */
  work: z.array(WorkTimingSchema),
  steps: z.array(StepTimingSchema),
  /** Digests of the models that served this item's work (one, unless a rollout was under way). */
  models: z.array(z.string()),
  /** Children this request ran again after they failed on the infrastructure (retry-policy.ts). */
  childRetries: z.number().int().nonnegative().default(0),
});
export type RequestTrace = z.infer<typeof RequestTraceSchema>;

export const RequestJobDataSchema = z.object({
  v: z.literal(PROTOCOL_VERSION),
  run: RunIdSchema,
  item: RequestItemSchema,
  /** The run's judge mode, for the result record; the search's judge rides in its judge requests. */
  judgeMode: JudgeModeSchema,
  /**
   * The search state (shared/core/search), packed (packState), read back with unpackState and
   * parseSearchState; null until the first step, which creates it from the run's settings
   * (kept once per run, not per job).
   */
  state: z.string().nullable(),
  /** Absent until the first step; `submittedAt` is then taken from the job's timestamp. */
  trace: RequestTraceSchema.optional(),
});
export type RequestJobData = z.infer<typeof RequestJobDataSchema>;

/**
 * A request job's run and item, of any protocol version: enough to record the failure of a
 * job this worker cannot run (`bad-job`), so the item is not left without an outcome.
 */
export const RequestEnvelopeSchema = z.object({ run: RunIdSchema, item: RequestItemSchema });

/**
 * A child job: a stretch of the item's search from `state` (packed as the request job packs it),
 * on the model its queue's workers hold.
 */
export const StretchJobDataSchema = z.object({
  v: z.literal(PROTOCOL_VERSION),
  run: RunIdSchema,
  item: ChildItemSchema,
  state: z.string().min(1),
});
export type StretchJobData = z.infer<typeof StretchJobDataSchema>;

export const FeedJobDataSchema = z.object({ v: z.literal(PROTOCOL_VERSION), run: RunIdSchema });
export type FeedJobData = z.infer<typeof FeedJobDataSchema>;

/** A search step a child's stretch decided: after how many of its works, and when. */
export const StepEndSchema = z.object({ works: z.number().int().nonnegative(), finishedAt: z.number() });
export type StepEnd = z.infer<typeof StepEndSchema>;

/**
 * What a child job returns (kept by BullMQ in the parent's processed hash): the search state it
 * reached, packed, the timing of each work it ran, the end of each step it decided, and the
 * digest of the model that ran them.
 */
export const ChildReturnSchema = z.object({
  state: z.string().min(1),
  work: z.array(WorkTimingSchema).min(1),
  steps: z.array(StepEndSchema),
  model: z.string(),
});
export type ChildReturn = z.infer<typeof ChildReturnSchema>;

/** Validate job data; malformed data is bad input (no retry can fix it). */
export function parseJobData<S extends z.ZodType>(schema: S, data: unknown, what: string): z.output<S> {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  const why = r.error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join(".") || "(data)"}: ${i.message}`)
    .join("; ");
  throw badInput("bad-job", `${what} job data is invalid: ${why}`);
}

// ---------------------------------------------------------------------------
// Job options

// How often and when a job runs again is the worker's retry policy (retry-policy.ts), which
// the worker registers as this backoff strategy.
const retries = { attempts: MAX_JOB_ATTEMPTS, backoff: { type: BACKOFF_TYPE } } as const;

/** Request jobs: a step re-runs from the state saved in its data, so retries are safe. */
export const REQUEST_JOB_OPTIONS: JobsOptions = {
  ...retries,
  removeOnComplete: { age: 3_600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3_600, count: 100_000 },
};

/** Child jobs (generate, judge, verify). */
export const CHILD_JOB_OPTIONS: JobsOptions = {
  ...retries,
  ignoreDependencyOnFailure: true,
  // The parent keeps each child's return value (or failure reason) itself, so finished
  // children can go soon.
  removeOnComplete: { age: 600, count: 10_000 },
  removeOnFail: { age: 24 * 3_600, count: 10_000 },
};

/**
 * The feed job: one per run (feedJobId). Its progress is the cursor in Redis, so a feeder that
 * died is resumed by whichever process BullMQ hands the stalled job to.
 */
export const FEED_JOB_OPTIONS: JobsOptions = {
  ...retries,
  removeOnComplete: { age: 24 * 3_600 },
  removeOnFail: { age: 7 * 24 * 3_600 },
};

// ---------------------------------------------------------------------------
// Queues

export interface FleetQueues {
  request: Queue;
  generate: Queue;
  judge: Queue;
  feed: Queue;
  verify: Queue;
  all: readonly Queue[];
  close(): Promise<void>;
}

/** The queues under `prefix` (never ioredis keyPrefix), with their event streams trimmed to nothing (EVENTS_MAX_LEN). */
export function openQueues(target: string | RedisTarget, prefix: string): FleetQueues {
  const { connection, close: closeConnection } = bullConnection(target);
  const open = (name: string, defaultJobOptions: JobsOptions) =>
    new Queue(name, { connection, prefix, defaultJobOptions, streams: { events: { maxLen: EVENTS_MAX_LEN } } });
  const request = open(QUEUES.request, REQUEST_JOB_OPTIONS);
  const generate = open(QUEUES.generate, CHILD_JOB_OPTIONS);
  const judge = open(QUEUES.judge, CHILD_JOB_OPTIONS);
  const verify = open(QUEUES.verify, CHILD_JOB_OPTIONS);
  const feed = open(QUEUES.feed, FEED_JOB_OPTIONS);
  const all = [request, generate, judge, verify, feed];
  for (const q of all) q.on("error", () => {}); // connection errors surface on use; avoid unhandled 'error'
  return {
    request,
    generate,
    judge,
    feed,
    verify,
    all,
    close: async () => {
      await Promise.all(all.map((q) => q.close()));
      closeConnection();
    },
  };
}
