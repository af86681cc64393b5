/**
 * The fleet's protocol: the queues and the job data they carry, deterministic ids and Redis key
 * names, reason codes and their retry classes, the retry policy, the records written to S3, the
 * connections to Redis, and what a worker needs from a model (`ModelHost`). The bottom floor of
 * the fleet: it imports no other room of it.
 */
export {
  FleetError,
  REASON_CODES,
  badInput,
  classify,
  fieldOfReason,
  isReasonCode,
  parseReason,
  toJobError,
} from "./errors.ts";
export type { QueueName } from "./ids.ts";
export { QUEUES, childJobId, feedJobId, requestJobId, runKeys, runsIndexKey, workIdOf } from "./ids.ts";
export { childJob, childWorkId, requestJob } from "./jobs.ts";
export type { ChildWork } from "./jobs.ts";
export { BadInputError, isBadInput } from "./model-host.ts";
export { packState, unpackState } from "./packed-state.ts";
export type { HostRuntime, ItemInput, ModelHost, OpenItem, OpenVerifierItem, VerifierHost } from "./model-host.ts";
export {
  ChildReturnSchema,
  FEED_JOB_OPTIONS,
  FeedJobDataSchema,
  PROTOCOL_VERSION,
  RequestEnvelopeSchema,
  RequestJobDataSchema,
  StepEndSchema,
  StretchJobDataSchema,
  openQueues,
  parseJobData,
} from "./protocol.ts";
export type {
  ChildItem,
  ChildReturn,
  FeedJobData,
  FleetQueues,
  RequestJobData,
  RequestTrace,
  StepEnd,
  StretchJobData,
  WorkTiming,
} from "./protocol.ts";
export {
  FailureRecordSchema,
  RECORD_VERSION,
  ResultRecordSchema,
  RunManifestSchema,
  failureInput,
  fleetFailure,
  isCorrect,
  putFailureRecord,
  settingsDiff,
} from "./records.ts";
export type { FailureRecord, ResultRecord, RunManifest } from "./records.ts";
export { bullConnection, connectRedis } from "./redis-client.ts";
export type { FleetRedis, RedisTarget } from "./redis-client.ts";
export { TRANSIENT_CODES, jobFailure, retryDelay, retryPolicy } from "./retry-policy.ts";
export type { RetryPolicy } from "./retry-policy.ts";
