import { readFile } from "node:fs/promises";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { METRIC_NAMES, createMetrics, createRegistry } from "../../shared/io/metrics.ts";
import { Readiness } from "../../shared/io/readiness.ts";
import { VERSION } from "../../shared/io/version.ts";
import { createQueueExporter, infoNumber, mergeFamilies, REDIS_SERIES } from "../../workers/fleet/ops/queue-exporter.ts";
import { spliceBetween } from "../../scripts/doc-table.ts";
import { END, START, metricRows, metricsTableMarkdown } from "../../scripts/metrics-table.ts";

describe("createMetrics", () => {
  it("registers every stagebeam series and the default process metrics", async () => {
    const m = createMetrics();
    m.itemsCompleted.inc();
    m.itemsFailed.inc({ reason: "bad_input" });
    m.stageLatency.observe({ stage: "SUMMARY" }, 0.3);
    m.tokensGenerated.inc(42);
    m.decodeBatchSize.observe(8);
    m.judgeDecisions.inc({ stage: "REASONING", verdict: "first" });
    m.modelLoadSeconds.set(1.25);
    m.modelInfo.set({ model: "tiny", digest: "sha256:ab" }, 1);
    m.jobsStalled.inc({ queue: "generate" });
    m.s3RequestSeconds.observe({ op: "PutObject" }, 0.01);
    m.s3Errors.inc({ op: "GetObject" });
    m.reportReadiness(new Readiness({ model: () => {} }));
    const text = await m.registry.metrics();
    for (const name of Object.values(METRIC_NAMES)) expect(text).toContain(`# TYPE ${name} `);
    expect(text).toContain(`stagebeam_build_info{version="${VERSION}"} 1`);
    expect(text).toContain('stagebeam_items_failed_total{reason="bad_input"} 1');
    expect(text).toContain('stagebeam_stage_latency_seconds_bucket{le="0.5",stage="SUMMARY"} 1');
    expect(text).toContain('stagebeam_decode_batch_size_bucket{le="8"} 1');
    expect(text).toContain('stagebeam_judge_decisions_total{stage="REASONING",verdict="first"} 1');
    expect(text).toContain('stagebeam_model_info{model="tiny",digest="sha256:ab"} 1');
    expect(text).toContain('stagebeam_readiness_check{check="model"} 1');
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).toContain("nodejs_eventloop_lag_seconds");
    expect(text).not.toContain("stagebeam_queue_jobs");
    expect(text).not.toContain("stagebeam_tokens_per_second");
  });

  it("a plain registry has the process series and build info only", async () => {
    const text = await createRegistry({ defaultMetrics: false }).metrics();
    expect(text.trim().split("\n")).toEqual([
      "# HELP stagebeam_build_info Always 1; its version label says which stagebeam release the process runs.",
      "# TYPE stagebeam_build_info gauge",
      `stagebeam_build_info{version="${VERSION}"} 1`,
    ]);
  });

  it("reports each readiness check as 1 or 0 at scrape time", async () => {
    const m = createMetrics({ defaultMetrics: false });
    let s3Down = false;
    m.reportReadiness(
      new Readiness(
        {
          redis: () => {},
          s3: () => {
            if (s3Down) throw new Error("NoSuchBucket");
          },
        },
        { ttlMs: 0 },
      ),
    );
    expect(await m.registry.metrics()).toContain('stagebeam_readiness_check{check="s3"} 1');
    s3Down = true;
    const text = await m.registry.metrics();
    expect(text).toContain('stagebeam_readiness_check{check="s3"} 0');
    expect(text).toContain('stagebeam_readiness_check{check="redis"} 1');
  });

  it("adds default labels", async () => {
    const m = createMetrics({ defaultMetrics: false, defaultLabels: { role: "worker" } });
    m.itemsCompleted.inc();
    expect(await m.registry.metrics()).toContain('stagebeam_items_completed_total{role="worker"} 1');
  });
});

describe("Readiness", () => {
  it("caches one evaluation for ttlMs, and times out a check that does not answer", async () => {
    let now = 0;
    let calls = 0;
    const r = new Readiness(
      {
        redis: () => {
          calls++;
        },
        s3: () => new Promise(() => {}),
      },
      { ttlMs: 5_000, timeoutMs: 20, now: () => now },
    );
    const first = await r.report();
    expect(first).toEqual({
      ready: false,
      checks: { redis: { ok: true }, s3: { ok: false, error: "no answer within 20 ms" } },
    });
    now = 4_999;
    await r.report();
    expect(calls).toBe(1);
    now = 5_000;
    await r.report();
    expect(calls).toBe(2);
  });

  it("is ready when every check resolves", async () => {
    const r = new Readiness({ a: () => Promise.resolve("PONG"), b: () => undefined });
    expect(await r.report()).toEqual({ ready: true, checks: { a: { ok: true }, b: { ok: true } } });
  });
});

describe("queue exporter text", () => {
  it("merges the families BullMQ repeats per queue into one each", () => {
    const page = (q: string, n: number) =>
      [
        "# HELP bullmq_job_count Number of jobs in the queue by state",
        "# TYPE bullmq_job_count gauge",
        `bullmq_job_count{queue="${q}", state="waiting"} ${n}`,
        "# HELP bullmq_job_completed_total Total number of completed jobs",
        "# TYPE bullmq_job_completed_total counter",
        `bullmq_job_completed_total{queue="${q}"} ${n * 10}`,
      ].join("\n");
    expect(mergeFamilies([page("request", 1), page("generate", 2)]).split("\n")).toEqual([
      "# HELP bullmq_job_count Number of jobs in the queue by state",
      "# TYPE bullmq_job_count gauge",
      'bullmq_job_count{queue="request", state="waiting"} 1',
      'bullmq_job_count{queue="generate", state="waiting"} 2',
      "# HELP bullmq_job_completed_total Total number of completed jobs",
      "# TYPE bullmq_job_completed_total counter",
      'bullmq_job_completed_total{queue="request"} 10',
      'bullmq_job_completed_total{queue="generate"} 20',
      "",
    ]);
    expect(() => mergeFamilies(['bullmq_job_count{queue="x"} 1'])).toThrow(/a sample before any # HELP or # TYPE line/);
  });

  it("reads numbers from INFO memory, and names a missing field", () => {
    const info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:0\r\n";
    expect(infoNumber(info, "used_memory")).toBe(1_048_576);
    expect(infoNumber(info, "maxmemory")).toBe(0);
    expect(() => infoNumber(info, "used_memory_rss")).toThrow("Redis INFO has no used_memory_rss field");
  });

  it("a scrape while Redis does not answer still serves the page, with stagebeam_redis_up 0 and no queue series", async () => {
    let redisDown = false;
    const queue = (name: string) =>
      ({
        exportPrometheusMetrics: async () =>
          redisDown
            ? Promise.reject(new Error("ECONNREFUSED"))
            : `# HELP bullmq_job_count c\n# TYPE bullmq_job_count gauge\nbullmq_job_count{queue="${name}", state="waiting"} 3`,
      }) as unknown as Queue;
    const redis = { info: async () => "used_memory:2048\r\nmaxmemory:4096\r\n" } as unknown as Redis;
    const errors: unknown[] = [];
    const exporter = createQueueExporter({
      queues: [queue("request"), queue("judge")],
      redis,
      registry: createRegistry({ defaultMetrics: false }),
      onError: (e) => errors.push(e),
    });
    const up = await exporter.metrics();
    expect(up).toContain("stagebeam_redis_up 1");
    expect(up).toContain("redis_memory_used_bytes 2048");
    expect(up).toContain("redis_memory_max_bytes 4096");
    expect(up).toContain('bullmq_job_count{queue="judge", state="waiting"} 3');
    expect(up.match(/# TYPE bullmq_job_count /g)).toHaveLength(1);
    redisDown = true;
    const down = await exporter.metrics();
    expect(down).toContain("stagebeam_redis_up 0");
    expect(down).toContain("stagebeam_build_info{");
    expect(down).not.toContain("bullmq_job_count{");
    expect(down).not.toMatch(/^redis_memory_used_bytes /m);
    expect(String(errors[0])).toContain("ECONNREFUSED");
  });
});

describe("the README's metrics table", () => {
  it("is the one generated from the registries (npx tsx scripts/metrics-table.ts --write README.md)", async () => {
    const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
    expect(spliceBetween(readme, START, END, metricsTableMarkdown())).toBe(readme);
  });

  it("lists every series a worker, the producer and the exporter register, once, with its type", async () => {
    const table = metricsTableMarkdown();
    const names = metricRows().map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    for (const name of Object.values(METRIC_NAMES)) expect(names).toContain(name);
    for (const s of REDIS_SERIES) expect(table).toContain(`| \`${s.name}\` | ${s.type} |`);
    expect(table).toContain("| `stagebeam_redis_up` | gauge | — | exporter |");
    expect(table).toContain("| `stagebeam_items_submitted_total` | counter | `outcome` | producer |");
    expect(table).toContain("| `stagebeam_stage_latency_seconds` | histogram | `stage` | worker |");
  });
});
