/**
 * The fleet worker (`stagebeam worker`): a BullMQ worker per queue it serves, the request job's
 * step, open items and their coalesced calls, the model and verifier hosts over workers/engine,
 * MODEL_URI downloads and the Redis watchdog. A worker also runs detached feeds (the feed room).
 */
export { createHosts, createModelHost, createVerifierHost } from "./engine-host.ts";
export { s3ImageFetcher } from "./images.ts";
export { watchRedis } from "./redis-watchdog.ts";
export { DEFAULT_GRACE_MS, DEFAULT_LOCK_DURATION_MS, startFleetWorker } from "./worker.ts";
export type { FleetWorker } from "./worker.ts";
