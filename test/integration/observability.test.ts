/**
 * The fleet as an operator watches it: a real Prometheus (the shipped scrape config and
 * rules, scraping every second) over a real redis-server, the embedded S3 server,
 * `stagebeam exporter` and two `stagebeam worker` processes on the bundled model. The backlog
 * series is checked against Redis while no worker runs; then every query of the Grafana
 * dashboard and every recording rule must return data from the run, and every series name
 * the dashboard and the rules use must be one that a process exports.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { startExporterProcess, type ExporterProcess } from "../../apps/demo/services/exporter-process.ts";
import { REPO_ROOT, startWorkerProcesses, type WorkerProcess } from "../../apps/demo/services/worker-processes.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { submitRun } from "../../workers/fleet/feed/index.ts";
import { waitForRun } from "../../workers/fleet/ops/index.ts";
import { runCli } from "../support/cli.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";
import { startPrometheus, type PrometheusServer, type PromSample } from "../support/prometheus.ts";

const SAMPLE = join(REPO_ROOT, "apps/demo/sample");
const DASHBOARD = join(REPO_ROOT, "infra/grafana/dashboards/stagebeam.json");
const RULE_FILES = ["infra/prometheus/rules/recording.yml", "infra/prometheus/rules/alerts.yml"].map((f) => join(REPO_ROOT, f));
const RUN = "observe-1";
/** Its good items again, once Prometheus knows every series (see the second test). */
const RUN_AGAIN = "observe-2";
const RUN_SETTINGS = { strategy: "stage", beam: 2, seed: 3, judgeMode: "score" } as const;
const GOOD_ITEMS = 6;
/** What Grafana puts for its interval variables; a minute spans the whole run. */
const GRAFANA_VARIABLES: Record<string, string> = { $__rate_interval: "1m", $__interval: "15s", $__range: "5m" };
const BACKLOG_STATES = ["waiting", "prioritized", "delayed", "active"] as const;

let env: FleetEnv;
let goodManifest: string;
let prometheus: PrometheusServer;
let exporter: ExporterProcess;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  env = await startFleetEnv();
  goodManifest = join(env.tmp, "good-items.jsonl");
  prometheus = await startPrometheus(join(env.tmp, "prometheus"));
  exporter = await startExporterProcess({ env: { ...env.env, LOG_LEVEL: "warn" } });
  await prometheus.setTargets("stagebeam-exporter", [`127.0.0.1:${exporter.ready.metricsPort}`]);
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await exporter?.stop();
  await prometheus?.stop();
  await env?.close();
});

/** Polls `read` until `done` holds for its value; the last value in the error otherwise. */
async function eventually<T>(what: string, read: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    try {
      last = await read();
      if (done(last)) return last;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const single = (samples: PromSample[]) => (samples.length === 1 ? Number(samples[0]!.value[1]) : Number.NaN);

/** The backlog as Redis holds it: jobs waiting for a worker or running, over every queue. */
async function trueBacklog(): Promise<number> {
  let total = 0;
  for (const q of env.queues.all) {
    const counts = await q.getJobCounts(...BACKLOG_STATES);
    for (const s of BACKLOG_STATES) total += counts[s] ?? 0;
  }
  return total;
}

/** Series lines (not comments) of a /metrics page: all, and those that are not prom-client's process_* and nodejs_*. */
async function seriesCount(url: string): Promise<{ all: number; own: number }> {
  const lines = (await (await fetch(url)).text()).split("\n").filter((l) => l !== "" && !l.startsWith("#"));
  return { all: lines.length, own: lines.filter((l) => !/^(process|nodejs)_/.test(l)).length };
}

/** The series names a PromQL expression reads: not functions, keywords, label names or values. */
function seriesNames(expr: string): string[] {
  const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = [...bare.matchAll(/(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()/g)].map((m) => m[1]!);
  return [...new Set(names.filter((n) => !KEYWORDS.has(n.toLowerCase())))];
}

interface DashboardPanel {
  title: string;
  targets?: { expr: string }[];
}

async function dashboardQueries(): Promise<{ panel: string; expr: string }[]> {
  const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8")) as { panels: DashboardPanel[] };
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

async function rules(): Promise<{ record?: string; alert?: string; expr: string }[]> {
  const files = await Promise.all(RULE_FILES.map(async (f) => parse(await readFile(f, "utf8"))));
  return files.flatMap((f) => f.groups.flatMap((g: { rules: unknown[] }) => g.rules));
}

describe("Prometheus over a real fleet", () => {
  it("recognises the series names of a query", () => {
    expect(
      seriesNames('sum by (le, op) (rate(stagebeam_s3_request_seconds_bucket{op="Put"}[5m])) / on () stagebeam:backlog_jobs > 0'),
    ).toEqual(["stagebeam_s3_request_seconds_bucket", "stagebeam:backlog_jobs"]);
    expect(seriesNames('histogram_quantile(0.95, x) or vector(0) and up{job="a"} unless absent(y == 1)')).toEqual([
      "x",
      "up",
      "y",
    ]);
  });

  it("stagebeam exporter --help names its series; a missing REDIS_URL is a usage error (exit 2)", async () => {
    const [help, noRedis] = await Promise.all([runCli(["exporter", "--help"]), runCli(["exporter"], { REDIS_URL: "" })]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: stagebeam exporter/);
    expect(help.stdout).toContain("bullmq_job_count{queue,state}");
    expect(noRedis.code).toBe(2);
    expect(noRedis.stderr).toMatch(/REDIS_URL: missing/);
  });

  it("with no worker running, the exporter exports the backlog, and stagebeam:backlog_jobs equals what Redis holds", async () => {
    const corrupt = await env.store.putBytes(Buffer.from("not an image"), "png");
    const lines = (await readFile(join(SAMPLE, "items.jsonl"), "utf8")).trim().split("\n").slice(0, GOOD_ITEMS);
    const manifest = join(env.tmp, "items.jsonl");
    const items = lines.map((l) => JSON.parse(l) as { id: string; image: string; question: string; answer: string });
    await writeFile(
      manifest,
      [
        ...items.map((i) => JSON.stringify({ ...i, image: join(SAMPLE, i.image) })),
        JSON.stringify({ id: "corrupt", image: corrupt.uri, question: "How many objects are there?" }),
      ].join("\n"),
    );
    await writeFile(goodManifest, items.map((i) => JSON.stringify({ ...i, image: join(SAMPLE, i.image) })).join("\n"));
    const summary = await submitRun(
      { run: RUN, manifest, imageRoot: SAMPLE, settings: RUN_SETTINGS },
      { queues: env.queues, store: env.store, ledger: env.ledger, runs: env.runs, logger: createLogger({ level: "silent" }) },
    );
    expect(summary.enqueued).toBe(GOOD_ITEMS + 1);

    const truth = await trueBacklog();
    expect(truth).toBe(GOOD_ITEMS + 1);
    const page = await (await fetch(exporter.metricsUrl)).text();
    expect(page).toMatch(new RegExp(`^bullmq_job_count\\{queue="request", ?state="waiting"\\} ${truth}$`, "m"));
    expect(page).toMatch(/^stagebeam_redis_up 1$/m);
    const backlog = await eventually(
      "stagebeam:backlog_jobs",
      async () => single(await prometheus.query("stagebeam:backlog_jobs")),
      (v) => v === truth,
    );
    expect(backlog).toBe(await trueBacklog());
    expect(single(await prometheus.query("stagebeam:workers_up"))).toBe(0);
  });

  it("two workers answer the run; every dashboard query and recording rule returns data, on series a process exports", async () => {
    workers.push(...(await startWorkerProcesses(2, { env: { ...env.env, WORKER_CONCURRENCY: "8", LOG_LEVEL: "warn" } })));
    await prometheus.setTargets(
      "stagebeam-worker",
      workers.map((w) => `127.0.0.1:${w.ready.metricsPort}`),
    );
    for (const w of workers) {
      const readyz = `http://127.0.0.1:${w.ready.metricsPort}/readyz`;
      const status = await eventually(
        readyz,
        async () => (await fetch(readyz)).status,
        (s) => s === 200,
        10_000,
      );
      expect(status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${w.ready.metricsPort}/healthz`)).status).toBe(200);
    }

    const counts = await waitForRun(RUN, env.ledger, { timeoutMs: 120_000 });
    expect(counts).toMatchObject({ completed: GOOD_ITEMS, failed: 1 });
    // Prometheus has scraped the final counters of both workers.
    await eventually(
      "items completed and failed in Prometheus",
      async () => [
        single(await prometheus.query("sum(stagebeam_items_completed_total)")),
        single(await prometheus.query("sum(stagebeam_items_failed_total)")),
      ],
      ([c, f]) => c === GOOD_ITEMS && f === 1,
    );
    await eventually(
      "workers ready",
      async () => single(await prometheus.query("stagebeam:workers_ready")),
      (v) => v === 2,
    );
    // A rate needs a counter to rise between two samples in its window. The first run can be
    // over before Prometheus first scrapes a worker (its series would appear at their final
    // values), so a second run, after every series is known, gives each rate its rise.
    const again = await submitRun(
      { run: RUN_AGAIN, manifest: goodManifest, imageRoot: SAMPLE, settings: RUN_SETTINGS },
      { queues: env.queues, store: env.store, ledger: env.ledger, runs: env.runs, logger: createLogger({ level: "silent" }) },
    );
    expect(again.enqueued).toBe(GOOD_ITEMS);
    expect(await waitForRun(RUN_AGAIN, env.ledger, { timeoutMs: 120_000 })).toMatchObject({ completed: GOOD_ITEMS });
    await eventually(
      "the second run's items in Prometheus",
      async () => single(await prometheus.query("sum(stagebeam_items_completed_total)")),
      (c) => c === 2 * GOOD_ITEMS,
    );

    const queries = (await dashboardQueries()).map(({ panel, expr }) => ({
      panel,
      query: Object.entries(GRAFANA_VARIABLES).reduce((q, [k, v]) => q.replaceAll(k, v), expr),
    }));
    for (const { panel, query } of queries) expect(query, `${panel}: a Grafana variable left`).not.toContain("$");
    const emptyQueries = async () => {
      const empty: string[] = [];
      for (const { panel, query } of queries) {
        const samples = await prometheus.query(query);
        if (!samples.some((s) => Number.isFinite(Number(s.value[1]))))
          empty.push(`${panel}: ${query} → ${JSON.stringify(samples)}`);
      }
      return empty;
    };
    // Recording rules see the final counters only at their next evaluations, and a rate needs
    // two samples in its window: a loaded machine can be a few evaluations behind the scrapes.
    const empty = await eventually("dashboard queries with data", emptyQueries, (e) => e.length === 0, 30_000).catch(() =>
      emptyQueries(),
    );
    expect(empty, "dashboard queries without a finite value").toEqual([]);

    const all = await rules();
    const recorded = new Set(all.flatMap((r) => (r.record ? [r.record] : [])));
    for (const name of recorded) expect((await prometheus.query(name)).length, name).toBeGreaterThan(0);
    const health = await prometheus.api<{ groups: { rules: { name: string; health: string; lastError?: string }[] }[] }>("rules");
    const unhealthy = health.groups.flatMap((g) => g.rules.filter((r) => r.health !== "ok"));
    expect(unhealthy).toEqual([]);
    expect(health.groups.flatMap((g) => g.rules)).toHaveLength(all.length);

    const stored = new Set(await prometheus.api<string[]>("label/__name__/values"));
    const used = [...(await dashboardQueries()).map((q) => q.expr), ...all.map((r) => r.expr)].flatMap(seriesNames);
    const unknown = [...new Set(used)].filter((n) => (n.includes(":") ? !recorded.has(n) : !stored.has(n)));
    expect(unknown, "series the dashboard or the rules use that nothing exports or records").toEqual([]);

    // The exporter is the only source of queue depth: no worker exports it.
    for (const w of workers) expect(await (await fetch(w.metricsUrl)).text()).not.toMatch(/^bullmq_|^stagebeam_queue_jobs/m);
    const workerSeries = await Promise.all(workers.map((w) => seriesCount(w.metricsUrl)));
    const exporterSeries = await seriesCount(exporter.metricsUrl);
    const shown = ({ all, own }: { all: number; own: number }) => `${all} series (${own} without process_*/nodejs_*)`;
    console.log(`scrape size: workers ${workerSeries.map(shown).join(", ")}; exporter ${shown(exporterSeries)}`);
    expect(exporterSeries.all).toBeLessThan(Math.min(...workerSeries.map((w) => w.all)));
  }, 150_000);

  it("the exporter stops on SIGTERM with exit code 0", async () => {
    expect(await exporter.stop()).toBe(0);
  });
});
