/**
 * `stagebeam exporter`: the fleet's queue state for Prometheus. Run exactly one per fleet (a
 * second one is harmless: the recording rules take the max per queue and state). It needs
 * Redis and no model, so it runs while no worker does, which is what lets a scaler scale the
 * workers up from zero. Serves /metrics, /healthz and /readyz on METRICS_PORT; SIGTERM or
 * Ctrl-C stops it (exit 0).
 */
import { Command } from "commander";
import { type ConfigPart, loadConfig } from "../../../shared/io/config.ts";
import { createLogger } from "../../../shared/io/logging.ts";
import { createRegistry, serveMetrics } from "../../../shared/io/metrics.ts";
import { connectRedis, openQueues } from "../../../workers/fleet/protocol/index.ts";
import { createQueueExporter } from "../../../workers/fleet/ops/index.ts";
import type { ExporterReady } from "../../demo/services/exporter-process.ts";

/** What this command reads from the environment (also what a deployment must set for it). */
export const EXPORTER_CONFIG_PARTS = ["redis", "metrics", "logging"] as const satisfies readonly ConfigPart[];

/** Log Redis trouble at most this often: Prometheus scrapes every few seconds. */
const ERROR_LOG_INTERVAL_MS = 60_000;

export const exporterCommand = new Command("exporter")
  .description(
    "export queue depth by queue and state, job totals and Redis memory for Prometheus (one per fleet; needs no model)",
  )
  .addHelpText(
    "after",
    "\nServes /metrics (bullmq_job_count{queue,state}, bullmq_job_completed_total, bullmq_job_failed_total,\n" +
      "redis_memory_used_bytes, redis_memory_max_bytes, stagebeam_redis_up), /healthz and /readyz.\n" +
      "Configuration comes from the environment: REDIS_URL, QUEUE_PREFIX, METRICS_PORT, LOG_LEVEL (see the README).",
  )
  .action(async () => {
    const config = loadConfig(process.env, EXPORTER_CONFIG_PARTS);
    const logger = createLogger({ name: "exporter", level: config.logging.level });
    const registry = createRegistry();
    const queues = openQueues(config.redis, config.redis.queuePrefix);
    const redis = connectRedis(config.redis, { maxRetriesPerRequest: 1 });
    let lastLogged = 0;
    const logError = (err: unknown) => {
      if (Date.now() - lastLogged < ERROR_LOG_INTERVAL_MS) return;
      lastLogged = Date.now();
      logger.warn({ err: err instanceof Error ? err.message : String(err) }, "could not read the queues from Redis");
    };
    redis.on("error", logError);
    const exporter = createQueueExporter({ queues: queues.all, redis, registry, onError: logError });
    const server = await serveMetrics(exporter, config.metrics.port);
    const ready: ExporterReady = { event: "ready", pid: process.pid, metricsPort: server.port };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    logger.info({ port: server.port, prefix: config.redis.queuePrefix }, "exporter serving /metrics");

    await new Promise<void>((done) => {
      const stop = (why: string) => {
        logger.info({ why }, "exporter stopping");
        done();
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });
    await server.close();
    await queues.close().catch(() => {});
    redis.disconnect();
  });
