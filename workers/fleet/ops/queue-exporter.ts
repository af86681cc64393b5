/**
 * The fleet's one source of queue state for Prometheus (`stagebeam exporter`): at each scrape
 * it asks Redis, through BullMQ's `Queue.exportPrometheusMetrics()`, for every queue's job
 * counts by state and its completed/failed totals, and reads `INFO memory`. It needs no model,
 * so it runs while no worker does (a scaler can scale up from zero), and it is the only
 * process that exports these series, so a `sum` counts each queue once.
 *
 * A scrape while Redis does not answer still succeeds, with stagebeam_redis_up 0 and no
 * queue series: an unreachable Redis and a dead exporter are different alerts.
 */
import type { Queue } from "bullmq";
import type { FleetRedis } from "../protocol/index.ts";
import { Gauge, type Registry } from "prom-client";
import type { MetricsSource } from "../../../shared/io/metrics.ts";

/**
 * The series read from Redis at scrape time, written as text (BullMQ writes its own), so that
 * a scrape that could not read Redis has none of them rather than stale or zero values. The
 * Redis names are the ones oliver006/redis_exporter uses, so its dashboards and these agree.
 */
export const REDIS_SERIES = [
  {
    name: "bullmq_job_count",
    type: "gauge",
    labels: ["queue", "state"],
    help: "Jobs per queue and state (active, completed, delayed, failed, prioritized, waiting, waiting-children), read from Redis at scrape time.",
  },
  {
    name: "bullmq_job_completed_total",
    type: "counter",
    labels: ["queue"],
    help: "Jobs of the queue that completed, as BullMQ counts them in Redis (the workers' `metrics` option).",
  },
  {
    name: "bullmq_job_failed_total",
    type: "counter",
    labels: ["queue"],
    help: "Jobs of the queue that failed for good (after their retries).",
  },
  { name: "redis_memory_used_bytes", type: "gauge", labels: [], help: "Redis used_memory (INFO memory), in bytes." },
  { name: "redis_memory_max_bytes", type: "gauge", labels: [], help: "Redis maxmemory, in bytes (0: no limit set)." },
] as const;

export const REDIS_UP = "stagebeam_redis_up";

export interface QueueExporterOptions {
  queues: readonly Queue[];
  /** A connection for INFO (the queues keep theirs for BullMQ). */
  redis: FleetRedis;
  /** Where the exporter's own gauges go; its text comes first in every scrape. */
  registry: Registry;
  /** Give up on Redis after this long for one scrape (default 3 s, under Prometheus's default scrape timeout). */
  timeoutMs?: number;
  /** Called when a scrape could not read Redis. */
  onError?: (err: unknown) => void;
}

/** The exporter's own prom-client series (the rest is text read from Redis: REDIS_SERIES). */
export function registerExporterSeries(registry: Registry): Gauge {
  return new Gauge({
    name: REDIS_UP,
    help: "1 when the exporter's last scrape read the queues and INFO from Redis, else 0.",
    registers: [registry],
  });
}

export function createQueueExporter(opts: QueueExporterOptions): MetricsSource {
  const timeoutMs = opts.timeoutMs ?? 3_000;
  const redisUp = registerExporterSeries(opts.registry);

  return {
    contentType: opts.registry.contentType,
    async metrics() {
      let fromRedis = "";
      try {
        const [pages, info] = await withTimeout(
          Promise.all([Promise.all(opts.queues.map((q) => q.exportPrometheusMetrics())), opts.redis.info("memory")]),
          timeoutMs,
        );
        fromRedis = mergeFamilies([...pages, memoryPage(info)]);
        redisUp.set(1);
      } catch (err) {
        redisUp.set(0);
        opts.onError?.(err);
      }
      return `${await opts.registry.metrics()}${fromRedis}`;
    },
  };
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  work.catch(() => {});
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

function memoryPage(info: string): string {
  const lines: string[] = [];
  const fields = { redis_memory_used_bytes: "used_memory", redis_memory_max_bytes: "maxmemory" } as const;
  for (const [name, field] of Object.entries(fields)) {
    const spec = REDIS_SERIES.find((s) => s.name === name)!;
    lines.push(`# HELP ${name} ${spec.help}`, `# TYPE ${name} ${spec.type}`, `${name} ${infoNumber(info, field)}`);
  }
  return lines.join("\n");
}

/** A field of an INFO section (`used_memory:1024`). */
export function infoNumber(info: string, field: string): number {
  const m = new RegExp(`^${field}:(\\d+)\\r?$`, "m").exec(info);
  if (!m) throw new Error(`Redis INFO has no ${field} field`);
  return Number(m[1]);
}

/**
 * One text page from several: each queue's page repeats the same families (# HELP, # TYPE),
 * and the text format wants each family once, with all its samples together.
 */
export function mergeFamilies(pages: readonly string[]): string {
  type Family = { help?: string; type?: string; samples: string[] };
  const families = new Map<string, Family>();
  for (const page of pages) {
    let current: Family | undefined;
    for (const line of page.split("\n")) {
      if (line.trim() === "") continue;
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        const name = meta[2]!;
        current = families.get(name) ?? { samples: [] };
        families.set(name, current);
        const kind = meta[1] === "HELP" ? "help" : "type";
        current[kind] ??= line;
      } else if (current) {
        current.samples.push(line);
      } else {
        throw new Error(`a sample before any # HELP or # TYPE line: ${line}`);
      }
    }
  }
  return [...families.values()]
    .map((f) => `${[f.help, f.type, ...f.samples].filter((l) => l !== undefined).join("\n")}\n`)
    .join("");
}
