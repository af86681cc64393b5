/**
 * Getting a run's items into the queues: `submit` (the producer) and the feeder that streams a
 * manifest in chunks under backpressure, with de-duplication, bad-line records, image staging and
 * the index of manifest order. Runs on the user's machine, or in a worker's feed job.
 */
export { waitForRoom } from "./backpressure.ts";
export { feedRun } from "./feeder.ts";
export { ImageStager } from "./image-staging.ts";
export { producerMetrics } from "./producer-metrics.ts";
export { DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BACKLOG, submitRun } from "./producer.ts";
export type { SubmitDeps, SubmitOptions, SubmitProgress, SubmitSummary } from "./producer.ts";
export { readIndex } from "./run-index.ts";
export type { IndexEntry } from "./run-index.ts";
