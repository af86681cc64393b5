import { describe, expect, it } from "vitest";
import { METRIC_NAMES, createMetrics } from "../../shared/io/metrics.ts";

describe("createMetrics", () => {
  it("registers every stagebeam series and the default process metrics", async () => {
    const m = createMetrics();
    m.itemsCompleted.inc();
    m.itemsFailed.inc({ reason: "bad_input" });
    m.stageLatency.observe({ stage: "SUMMARY" }, 0.3);
    m.tokensGenerated.inc(42);
    m.tokensPerSecond.set(123.5);
    m.decodeBatchSize.observe(8);
    m.judgeDecisions.inc({ stage: "REASONING", verdict: "first" });
    m.modelLoadSeconds.set(1.25);
    m.s3RequestSeconds.observe({ op: "PutObject" }, 0.01);
    m.s3Errors.inc({ op: "GetObject" });
    const text = await m.registry.metrics();
    for (const name of Object.values(METRIC_NAMES)) expect(text).toContain(`# TYPE ${name} `);
    expect(text).toContain('stagebeam_items_failed_total{reason="bad_input"} 1');
    expect(text).toContain('stagebeam_stage_latency_seconds_bucket{le="0.5",stage="SUMMARY"} 1');
    expect(text).toContain('stagebeam_decode_batch_size_bucket{le="8"} 1');
    expect(text).toContain('stagebeam_judge_decisions_total{stage="REASONING",verdict="first"} 1');
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).toContain("nodejs_eventloop_lag_seconds");
  });

  it("fills queue depth from the collector at scrape time, replacing old rows", async () => {
    let rows = [
      { queue: "request", state: "waiting", count: 5 },
      { queue: "candidate", state: "active", count: 2 },
    ];
    const m = createMetrics({ defaultMetrics: false, queueCollector: () => rows });
    let text = await m.registry.metrics();
    expect(text).toContain('stagebeam_queue_jobs{queue="request",state="waiting"} 5');
    expect(text).toContain('stagebeam_queue_jobs{queue="candidate",state="active"} 2');
    rows = [{ queue: "request", state: "waiting", count: 1 }];
    text = await m.registry.metrics();
    expect(text).toContain('stagebeam_queue_jobs{queue="request",state="waiting"} 1');
    expect(text).not.toContain('queue="candidate"');
  });

  it("a failing or hanging collector leaves the gauge empty and reports the error", async () => {
    const errors: unknown[] = [];
    const m = createMetrics({
      defaultMetrics: false,
      queueCollectTimeoutMs: 50,
      onCollectError: (e) => errors.push(e),
      queueCollector: () => new Promise(() => {}),
    });
    const text = await m.registry.metrics();
    expect(text).not.toMatch(/stagebeam_queue_jobs\{/);
    expect(String(errors[0])).toContain("timed out after 50 ms");
    m.setQueueCollector(() => {
      throw new Error("redis down");
    });
    await m.registry.metrics();
    expect(String(errors[1])).toContain("redis down");
  });

  it("adds default labels", async () => {
    const m = createMetrics({ defaultMetrics: false, defaultLabels: { role: "worker" } });
    m.itemsCompleted.inc();
    expect(await m.registry.metrics()).toContain('stagebeam_items_completed_total{role="worker"} 1');
  });
});
