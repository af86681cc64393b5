/**
 * Prometheus metrics: one registry per process, plus a tiny node:http server for `/metrics`,
 * `/healthz` and `/readyz`. Dashboards and alert rules must use exactly these names: change
 * them together (infra/prometheus/, infra/grafana/; the README's table is generated from the
 * registries by scripts/metrics-table.ts).
 *
 * Queue depth is not here: exactly one kind of process, `stagebeam exporter`
 * (workers/fleet/ops/queue-exporter.ts), reads it from Redis, so a sum over processes counts
 * each queue once, and it is there with zero workers.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Readiness, ReadinessReport } from "./readiness.ts";
import { VERSION } from "./version.ts";

export const METRIC_NAMES = {
  buildInfo: "stagebeam_build_info",
  itemsCompleted: "stagebeam_items_completed_total",
  itemsFailed: "stagebeam_items_failed_total",
  stageLatency: "stagebeam_stage_latency_seconds",
  tokensGenerated: "stagebeam_tokens_generated_total",
  decodeBatchSize: "stagebeam_decode_batch_size",
  judgeDecisions: "stagebeam_judge_decisions_total",
  modelLoadSeconds: "stagebeam_model_load_seconds",
  modelInfo: "stagebeam_model_info",
  readinessCheck: "stagebeam_readiness_check",
  jobsStalled: "stagebeam_jobs_stalled_total",
  s3RequestSeconds: "stagebeam_s3_request_seconds",
  s3Errors: "stagebeam_s3_errors_total",
  retries: "stagebeam_retries_total",
} as const;

export interface RegistryOptions {
  /** Collect prom-client's default process metrics (default true). */
  defaultMetrics?: boolean;
  /** Labels added to every series, e.g. { role: "worker" }. */
  defaultLabels?: Record<string, string>;
}

export interface StagebeamMetrics {
  registry: Registry;
  itemsCompleted: Counter<never>;
  itemsFailed: Counter<"reason">;
  stageLatency: Histogram<"stage">;
  tokensGenerated: Counter<never>;
  decodeBatchSize: Histogram<never>;
  judgeDecisions: Counter<"stage" | "verdict">;
  modelLoadSeconds: Gauge<never>;
  modelInfo: Gauge<"model" | "digest">;
  jobsStalled: Counter<"queue">;
  s3RequestSeconds: Histogram<"op">;
  s3Errors: Counter<"op">;
  retries: Counter<"kind" | "reason">;
  /** stagebeam_readiness_check{check} reports this readiness at scrape time (a worker sets it once it has one). */
  reportReadiness(readiness: Readiness | undefined): void;
}

/** Stage latency buckets: a stage takes from tens of milliseconds (tiny model) to minutes (big model on CPU). */
export const STAGE_LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
export const DECODE_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
export const S3_LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A process's registry: prom-client's process metrics and stagebeam_build_info{version}, which every stagebeam process exports. */
export function createRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.defaultLabels) registry.setDefaultLabels(opts.defaultLabels);
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  new Gauge({
    name: METRIC_NAMES.buildInfo,
    help: "Always 1; its version label says which stagebeam release the process runs.",
    labelNames: ["version"],
    registers: [registry],
  }).set({ version: VERSION }, 1);
  return registry;
}

/** The registry of a process that does fleet work (a worker; a producer registers the same names): the process series and every stagebeam series. */
export function createMetrics(opts: RegistryOptions = {}): StagebeamMetrics {
  const registry = createRegistry(opts);
  const registers = [registry];

  let readiness: Readiness | undefined;
  new Gauge<"check">({
    name: METRIC_NAMES.readinessCheck,
    help: "1 while the named readiness check of a worker (model, redis, s3) passes, else 0; /readyz answers 200 when all do.",
    labelNames: ["check"],
    registers,
    async collect() {
      this.reset();
      if (!readiness) return;
      const report = await readiness.report();
      for (const [check, result] of Object.entries(report.checks)) this.set({ check }, result.ok ? 1 : 0);
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
      help: "Tokens sampled by the decoder (candidates and judge outputs); rates are PromQL's: rate(...[1m]).",
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
    modelInfo: new Gauge({
      name: METRIC_NAMES.modelInfo,
      help: "1 once the worker has loaded its model; the labels name the model and its digest (two digests at once: a rollout).",
      labelNames: ["model", "digest"],
      registers,
    }),
    jobsStalled: new Counter({
      name: METRIC_NAMES.jobsStalled,
      help: "Jobs this worker's stall check found with an expired lock (their worker died or starved its event loop), by queue.",
      labelNames: ["queue"],
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
    reportReadiness(r) {
      readiness = r;
    },
  };
}

/** What `/metrics` serves: a prom-client Registry, or anything that writes the text format the same way. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface ServeOptions {
  /** `/readyz` answers 200 only when this reports ready (default: always 200, nothing to wait for). */
  readiness?: Readiness;
}

/** `ready` or `not ready`, then one line per check: `redis ok`, `s3 failed: <why>`. */
function readinessText(report: ReadinessReport): string {
  const lines = Object.entries(report.checks).map(([name, r]) =>
    r.ok ? `${name} ok` : `${name} failed: ${r.error ?? "unknown"}`,
  );
  return `${[report.ready ? "ready" : "not ready", ...lines].join("\n")}\n`;
}

export interface MetricsServer {
  port: number;
  server: Server;
  close(): Promise<void>;
}

/**
 * Serve `GET /metrics` (Prometheus text format), `GET /healthz` (liveness: the process
 * answers) and `GET /readyz` (readiness: 200 when every check passes, else 503 naming the
 * failing ones) on the given port (0 picks a free one). Resolves once listening, with the
 * bound port.
 */
export async function serveMetrics(
  source: MetricsSource,
  port: number,
  host = "0.0.0.0",
  opts: ServeOptions = {},
): Promise<MetricsServer> {
  const text = (res: ServerResponse, status: number, body: string, head: boolean) =>
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(head ? undefined : body);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      source.metrics().then(
        (body) => res.writeHead(200, { "content-type": source.contentType }).end(head ? undefined : body),
        (err: unknown) =>
          text(res, 500, `metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`, head),
      );
      return;
    }
    if (path === "/healthz") {
      text(res, 200, "ok\n", head);
      return;
    }
    if (path === "/readyz") {
      if (!opts.readiness) {
        text(res, 200, "ready\n", head);
        return;
      }
      opts.readiness.report().then(
        (report) => text(res, report.ready ? 200 : 503, readinessText(report), head),
        (err: unknown) => text(res, 503, `readiness check failed: ${err instanceof Error ? err.message : String(err)}\n`, head),
      );
      return;
    }
    text(res, 404, "not found; try /metrics, /healthz or /readyz\n", head);
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
