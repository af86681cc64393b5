/**
 * `stagebeam worker`: one process per GPU. Loads the model once, serves the request, generate
 * and judge queues, serves /metrics, /healthz (liveness) and /readyz (ready once the model is
 * loaded and Redis and S3 answer; checked at most every few seconds), and on SIGTERM (or
 * Ctrl-C) stops taking work, finishes or hands back what it holds within the grace period, and
 * exits 0. A second signal ends the grace period at once (jobs still running are handed back);
 * a third exits immediately.
 */
import { Command } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { createLogger } from "../../../shared/io/logging.ts";
import { createMetrics, serveMetrics } from "../../../shared/io/metrics.ts";
import { Readiness } from "../../../shared/io/readiness.ts";
import { S3Store } from "../../../shared/io/storage/s3-store.ts";
import {
  createHosts,
  DEFAULT_GRACE_MS,
  DEFAULT_LOCK_DURATION_MS,
  type FleetWorker,
  startFleetWorker,
  watchRedis,
} from "../../../workers/fleet/worker/index.ts";
import type { ModelHost, VerifierHost } from "../../../workers/fleet/protocol/index.ts";
import type { WorkerReady } from "../../demo/services/worker-processes.ts";
import { EXIT_FAILURE, intOption, secondsOption } from "./common.ts";

/** The configuration a worker reads (deployment manifests are checked against it). */
export const WORKER_CONFIG_PARTS = ["redis", "s3", "model", "verifier", "worker", "engine", "metrics", "logging"] as const;

interface WorkerOptions {
  concurrency?: number;
  lockDuration: number;
  grace: number;
  cacheItems: number;
  name?: string;
}

export const workerCommand = new Command("worker")
  .description("serve the fleet's queues with one model (one process per GPU); SIGTERM stops it gracefully")
  .option("--concurrency <n>", "jobs of each queue run at once (default WORKER_CONCURRENCY)", intOption("--concurrency", 1, 1024))
  .option(
    "--lock-duration <seconds>",
    "BullMQ job lock; must outlast the slowest single job",
    secondsOption("--lock-duration"),
    DEFAULT_LOCK_DURATION_MS / 1000,
  )
  .option(
    "--grace <seconds>",
    "on SIGTERM: time to finish running jobs before handing them back",
    secondsOption("--grace"),
    DEFAULT_GRACE_MS / 1000,
  )
  .option("--cache-items <n>", "open items (decoded image, prompt cache) kept per process", intOption("--cache-items", 1), 64)
  .option("--name <name>", "worker name recorded on jobs and results (default host-pid)")
  .addHelpText(
    "after",
    "\nConfiguration comes from the environment: REDIS_URL, QUEUE_PREFIX, S3_*, MODEL_DIR or MODEL_URI,\nMODEL_DIGEST, WORKER_MODELS, VERIFIER_MODEL_DIR or VERIFIER_MODEL_URI, VERIFIER_MODEL_DIGEST, WORKER_CONCURRENCY, EXECUTION_PROVIDERS, METRICS_PORT, LOG_LEVEL (see the README).",
  )
  .action(async (opts: WorkerOptions) => {
    const config = loadConfig(process.env, WORKER_CONFIG_PARTS);
    const logger = createLogger({ name: "worker", level: config.logging.level });
    const metrics = createMetrics();
    const concurrency = opts.concurrency ?? config.worker.concurrency;
    const store = S3Store.fromConfig(config.s3, { metrics });
    const watchdog =
      config.worker.redisGiveUpSeconds > 0
        ? watchRedis(config.redis.url, {
            giveUpMs: config.worker.redisGiveUpSeconds * 1000,
            onGiveUp: (silentMs) => {
              // Nothing can be handed back without Redis; the jobs' locks expire and other workers take them.
              logger.fatal(
                { silentSeconds: Math.round(silentMs / 1000) },
                `Redis has not answered for ${Math.round(silentMs / 1000)} s (WORKER_REDIS_GIVE_UP_SECONDS); exiting`,
              );
              process.exit(EXIT_FAILURE);
            },
          })
        : undefined;
    let running: FleetWorker | undefined;
    let stopping = false;
    const readiness = new Readiness({
      model: () => {
        if (stopping) throw new Error("stopping");
        if (!running) throw new Error("loading the model");
      },
      redis: () => (running ? running.pingRedis() : Promise.reject(new Error("not connected yet"))),
      s3: () => store.ping(),
    });
    metrics.reportReadiness(readiness);
    const metricsServer = await serveMetrics(metrics.registry, config.metrics.port, undefined, { readiness });

    const t0 = performance.now();
    let host: ModelHost | null;
    let verifier: VerifierHost | null;
    try {
      ({ host, verifier } = await createHosts({ ...config, worker: { ...config.worker, concurrency } }, { logger, metrics }));
    } catch (err) {
      logger.error({ err: (err as Error).message }, "could not load the model");
      await metricsServer.close();
      store.destroy();
      watchdog?.close();
      throw err;
    }
    metrics.modelLoadSeconds.set((performance.now() - t0) / 1000);
    for (const loaded of [host, verifier]) if (loaded) metrics.modelInfo.set({ model: loaded.modelId, digest: loaded.digest }, 1);

    const fleet = await startFleetWorker({
      redisUrl: config.redis.url,
      redisCluster: config.redis.cluster,
      prefix: config.redis.queuePrefix,
      store,
      host,
      verifier,
      metrics,
      logger,
      concurrency,
      retryBudgetSeconds: config.worker.retryBudgetSeconds,
      lockDurationMs: Math.round(opts.lockDuration * 1000),
      cacheItems: opts.cacheItems,
      ...(opts.name !== undefined ? { name: opts.name } : {}),
    });
    running = fleet;
    const ready: WorkerReady = {
      event: "ready",
      name: fleet.name,
      pid: process.pid,
      metricsPort: metricsServer.port,
      model: (host ?? verifier)!.modelId,
      digest: (host ?? verifier)!.digest,
      ...(verifier !== null ? { verifier: verifier.modelId, verifierDigest: verifier.digest } : {}),
      concurrency,
    };
    process.stdout.write(`${JSON.stringify(ready)}\n`);

    await new Promise<void>((done) => {
      let signals = 0;
      const shutdown = (why: string) => {
        signals++;
        if (signals === 2) {
          logger.warn({ why }, "asked again: handing running jobs back now");
          fleet.hurry();
          return;
        }
        if (signals > 2) {
          logger.warn({ why }, "asked a third time: exiting at once");
          process.exit(EXIT_FAILURE);
        }
        logger.info({ why, graceSeconds: opts.grace }, "shutting down");
        stopping = true;
        void (async () => {
          try {
            const { handedBack } = await fleet.stop({ graceMs: opts.grace * 1000 });
            await host?.close?.();
            await verifier?.close?.();
            await metricsServer.close();
            store.destroy();
            watchdog?.close();
            logger.info({ handedBack }, "worker stopped");
            done();
          } catch (err) {
            logger.error({ err: (err as Error).message }, "unclean shutdown");
            process.exit(EXIT_FAILURE);
          }
        })();
      };
      process.on("SIGTERM", () => shutdown("SIGTERM"));
      process.on("SIGINT", () => shutdown("SIGINT"));
      // A supervisor that starts us with a pipe on stdin (stagebeam demo) stops us by closing it,
      // which also happens when it dies without a word.
      if (config.worker.stopOnStdinEof) {
        process.stdin.on("end", () => shutdown("stdin closed"));
        process.stdin.on("error", () => shutdown("stdin closed"));
        process.stdin.resume();
      }
    });
    // Anything the model host still runs (a job handed back mid-generation) must not keep us alive.
    process.exit(0);
  });
