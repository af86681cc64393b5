/**
 * What operators run against a fleet: `status`, `results`, `runs`, `export`, `cancel`, `retry` and
 * the queue exporter for Prometheus.
 */
export { cancelRun } from "./cancel.ts";
export { DEFAULT_RETENTION_SECONDS, EXPORT_FORMATS, exportRun } from "./export.ts";
export type { ExportFormat } from "./export.ts";
export { REDIS_SERIES, createQueueExporter, registerExporterSeries } from "./queue-exporter.ts";
export { retryRun } from "./retry.ts";
export { listRuns } from "./run-list.ts";
export type { RunListing } from "./run-list.ts";
export { QUEUE_STATES, formatStatus, queueCounts, runStatus, streamRecords, waitForRun } from "./status.ts";
export type { RunStatus } from "./status.ts";
