/**
 * Prometheus metrics: one registry per process with every stagebeam series, plus a tiny
 * node:http server for `/metrics`. Dashboards and alert rules must use exactly these names:
 * change them together.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export const METRIC_NAMES = {
  itemsCompleted: "stagebeam_items_completed_total",
  itemsFailed: "stagebeam_items_failed_total",
  stageLatency: "stagebeam_stage_latency_seconds",
  tokensGenerated: "stagebeam_tokens_generated_total",
  tokensPerSecond: "stagebeam_tokens_per_second",
  decodeBatchSize: "stagebeam_decode_batch_size",
  judgeDecisions: "stagebeam_judge_decisions_total",
  modelLoadSeconds: "stagebeam_model_load_seconds",
  s3RequestSeconds: "stagebeam_s3_request_seconds",
  s3Errors: "stagebeam_s3_errors_total",
  retries: "stagebeam_retries_total",
  queueJobs: "stagebeam_queue_jobs",
} as const;

/** One row of queue depth, as the fleet's collector reports it. */
export interface QueueDepth {
  queue: string;
  /** BullMQ state: waiting, prioritized, active, delayed, waiting-children, completed, failed, paused. */
  state: string;
  count: number;
}

export type QueueCollector = () => Promise<readonly QueueDepth[]> | readonly QueueDepth[];

export interface MetricsOptions {
  /** Register into this registry instead of a new one. */
  registry?: Registry;
  /** Collect prom-client's default process metrics (default true). */
  defaultMetrics?: boolean;
  /** Labels added to every series, e.g. { role: "worker" }. */
  defaultLabels?: Record<string, string>;
  /** Fills stagebeam_queue_jobs at scrape time; can also be set later with setQueueCollector. */
  queueCollector?: QueueCollector;
  /** A collector slower than this is abandoned for that scrape (default 3000 ms). */
  queueCollectTimeoutMs?: number;
  /** Called when the queue collector throws or times out (the gauge is left empty for that scrape). */
  onCollectError?: (err: unknown) => void;
}

export interface StagebeamMetrics {
  registry: Registry;
  itemsCompleted: Counter<never>;
  itemsFailed: Counter<"reason">;
  stageLatency: Histogram<"stage">;
  tokensGenerated: Counter<never>;
  tokensPerSecond: Gauge<never>;
  decodeBatchSize: Histogram<never>;
  judgeDecisions: Counter<"stage" | "verdict">;
  modelLoadSeconds: Gauge<never>;
  s3RequestSeconds: Histogram<"op">;
  s3Errors: Counter<"op">;
  retries: Counter<"kind" | "reason">;
  queueJobs: Gauge<"queue" | "state">;
  setQueueCollector(collector: QueueCollector | undefined): void;
}

/** Stage latency buckets: a stage takes from tens of milliseconds (tiny model) to minutes (big model on CPU). */
export const STAGE_LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
export const DECODE_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
export const S3_LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createMetrics(opts: MetricsOptions = {}): StagebeamMetrics {
  const registry = opts.registry ?? new Registry();
  if (opts.defaultLabels) registry.setDefaultLabels(opts.defaultLabels);
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  let collector = opts.queueCollector;
  const timeoutMs = opts.queueCollectTimeoutMs ?? 3000;

  const queueJobs = new Gauge<"queue" | "state">({
    name: METRIC_NAMES.queueJobs,
    help: "Jobs per BullMQ queue and state, read from Redis at scrape time.",
    labelNames: ["queue", "state"],
    registers,
    async collect() {
      this.reset();
      if (!collector) return;
      let timer: NodeJS.Timeout | undefined;
      try {
        const rows = await Promise.race([
          Promise.resolve(collector()),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`queue collector timed out after ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        for (const r of rows) this.set({ queue: r.queue, state: r.state }, r.count);
      } catch (err) {
        opts.onCollectError?.(err);
      } finally {
        if (timer) clearTimeout(timer);
      }
    },
  });

  return {
    registry,
    itemsCompleted: new Counter({
      name: METRIC_NAMES.itemsCompleted,
      help: "Items that ended with a result written to S3.",
      registers,
    }),
    itemsFailed: new Counter({
      name: METRIC_NAMES.itemsFailed,
      help: "Items that ended with a failure record, by reason.",
      labelNames: ["reason"],
      registers,
    }),
    stageLatency: new Histogram({
      name: METRIC_NAMES.stageLatency,
      help: "Wall time of one search stage of one item (candidates plus judging), in seconds.",
      labelNames: ["stage"],
      buckets: STAGE_LATENCY_BUCKETS,
      registers,
    }),
    tokensGenerated: new Counter({
      name: METRIC_NAMES.tokensGenerated,
      help: "Tokens sampled by the decoder (candidates and judge outputs).",
      registers,
    }),
    tokensPerSecond: new Gauge({
      name: METRIC_NAMES.tokensPerSecond,
      help: "Recent decode throughput of this process, in tokens per second.",
      registers,
    }),
    decodeBatchSize: new Histogram({
      name: METRIC_NAMES.decodeBatchSize,
      help: "Sequences per decoder call, observed by the engine at each batched decode step (not per fleet job or host call).",
      buckets: DECODE_BATCH_BUCKETS,
      registers,
    }),
    judgeDecisions: new Counter({
      name: METRIC_NAMES.judgeDecisions,
      help: "Judge verdicts by stage (SUMMARY, CAPTION, REASONING, CONCLUSION, all, sentence, reasoning_check) and verdict.",
      labelNames: ["stage", "verdict"],
      registers,
    }),
    modelLoadSeconds: new Gauge({
      name: METRIC_NAMES.modelLoadSeconds,
      help: "Seconds the last model load took (download, verification and session creation).",
      registers,
    }),
    s3RequestSeconds: new Histogram({
      name: METRIC_NAMES.s3RequestSeconds,
      help: "S3 request latency by operation, in seconds (retries included).",
      labelNames: ["op"],
      buckets: S3_LATENCY_BUCKETS,
      registers,
    }),
    s3Errors: new Counter({
      name: METRIC_NAMES.s3Errors,
      help: "S3 requests that failed after the SDK's retries, by operation.",
      labelNames: ["op"],
      registers,
    }),
    retries: new Counter({
      name: METRIC_NAMES.retries,
      help: "Jobs that failed and will run again, by job kind (request, generate, judge) and reason code.",
      labelNames: ["kind", "reason"],
      registers,
    }),
    queueJobs,
    setQueueCollector(c) {
      collector = c;
    },
  };
}

export interface MetricsServer {
  port: number;
  server: Server;
  close(): Promise<void>;
}

/**
 * Serve `GET /metrics` (Prometheus text format) and `GET /healthz` on the given port
 * (0 picks a free one). Resolves once listening, with the bound port.
 */
export async function serveMetrics(registry: Registry, port: number, host = "0.0.0.0"): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(req.method === "HEAD" ? undefined : body);
        },
        (err: unknown) => {
          res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
          res.end(`metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`);
        },
      );
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end("ok\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found; try /metrics\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    server,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
