/**
 * `stagebeam demo`: the whole fleet on one machine, end to end. Starts a private redis-server
 * (AOF, noeviction), an embedded S3 server, two `stagebeam worker` processes, submits the
 * bundled sample scenes, shows progress, prints a table of answers against the gold answers,
 * where the results are, and the /metrics URLs; then shuts everything down (also on Ctrl-C).
 * `--keep` leaves the fleet running after the sample run, printing the settings that reach it,
 * until Ctrl-C; `--workers N` sets its size.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { createLogger } from "../../../shared/io/logging.ts";
import { createMetrics, serveMetrics, type MetricsServer } from "../../../shared/io/metrics.ts";
import { freePort } from "../../demo/services/free-port.ts";
import { startRedisServer } from "../../demo/services/redis-server.ts";
import { startS3Server } from "../../demo/services/s3-server.ts";
import { producerMetrics, submitRun } from "../../../workers/fleet/feed/index.ts";
import { createQueueExporter, streamRecords, waitForRun } from "../../../workers/fleet/ops/index.ts";
import { startWorkerProcesses, type WorkerProcess } from "../../demo/services/worker-processes.ts";
import type { FailureRecord, ResultRecord } from "../../../workers/fleet/protocol/index.ts";
import { formatDuration } from "../../../shared/core/duration.ts";
import { CliExit, EXIT_FAILURE, EXIT_INTERRUPTED, intOption } from "./common.ts";
import { openFleet, type Fleet } from "./fleet-connection.ts";
import { createProgress } from "./progress.ts";
import { addSearchOptions, searchSettings, type SearchCliOptions } from "./search-options.ts";

export const DEMO_SAMPLE = fileURLToPath(new URL("../../demo/sample", import.meta.url));

interface DemoOptions extends SearchCliOptions {
  workers: number;
  concurrency: number;
  sample: string;
  dataDir: string;
  keep: boolean;
}

const say = (s: string) => process.stderr.write(`${s}\n`);

/** A path relative to the working directory when it lies inside it, else absolute. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === "" || rel.startsWith("..") ? path : rel;
}

function cut(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

export function answerTable(results: readonly ResultRecord[]): string {
  const rows = results.map((r, i) => [
    String(i + 1),
    cut(r.question, 64),
    cut(r.answer ?? "(none)", 24),
    r.gold ?? "—",
    r.correct === null ? "—" : r.correct ? "yes" : "no",
  ]);
  const head = ["#", "question", "answer", "gold", "correct"];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const fmt = (r: string[]) =>
    r
      .map((v, c) => v.padEnd(widths[c]!))
      .join("  ")
      .trimEnd();
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(fmt)].join("\n");
}

/** Reads counter totals from a Prometheus text page. */
function metricTotal(page: string, name: string): number {
  let total = 0;
  for (const line of page.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
  }
  return total;
}

/** What --keep prints: the settings that reach the kept fleet from another shell, and what to run with them. */
export function keptFleetHelp(
  env: Readonly<Record<string, string>>,
  workers: readonly WorkerProcess[],
  producerMetricsUrl: string,
): string {
  const quoted = (v: string) => `'${v.replace(/'/g, "'\\''")}'`;
  const settings = Object.entries(env)
    .filter(([name]) => name !== "WORKER_CONCURRENCY")
    .map(([name, value]) => `export ${name}=${quoted(value)}`);
  return [
    "",
    "the fleet keeps running (--keep): Redis, S3 and the workers take more work until Ctrl-C. From another shell:",
    // s3rver checks no signatures: its key pair is a placeholder, not a secret.
    ...settings.map((l) => `  ${l}`),
    "  stagebeam submit --run mine --manifest apps/demo/sample/items.jsonl --wait",
    "  stagebeam status --run mine",
    "  stagebeam worker                 # one more worker (METRICS_PORT=0 for a free /metrics port)",
    "  stagebeam exporter               # queue depth for Prometheus (METRICS_PORT)",
    "  stagebeam dashboard              # the web dashboard (DASHBOARD_PORT, DASHBOARD_TOKEN)",
    "metrics:",
    ...workers.map((w) => `  worker ${w.index}: ${w.metricsUrl}`),
    `  producer: ${producerMetricsUrl}`,
  ].join("\n");
}

export const demoCommand = addSearchOptions(
  new Command("demo").description(
    "run the whole fleet locally: private Redis, embedded S3, N workers (default two), the bundled sample scenes; --keep leaves it running",
  ),
)
  .option("--workers <n>", "worker processes", intOption("--workers", 1, 16), 2)
  .option("--concurrency <n>", "WORKER_CONCURRENCY of each worker", intOption("--concurrency", 1, 256), 8)
  .option("--sample <dir>", "scene set to submit (PNG files + items.jsonl)", DEMO_SAMPLE)
  .option("--data-dir <dir>", "where the demo keeps its S3 data, logs and a copy of the results", ".work/demo")
  .option("--keep", "after the sample run, keep Redis, S3 and the workers running for other commands, until Ctrl-C", false)
  .addHelpText("after", "\nNeeds redis-server on PATH (npm run demo installs it). Model: MODEL_DIR, default the bundled one.")
  .action(async (o: DemoOptions) => {
    // Settings first: a bad strategy or beam is an error before any server starts.
    const settings = searchSettings(o);
    const abort = new AbortController();
    const onSignal = () => {
      if (abort.signal.aborted) process.exit(EXIT_INTERRUPTED);
      say(`\n${kept ? "stopping" : "interrupted"}: shutting everything down (Ctrl-C again to quit at once)`);
      abort.abort();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    const interrupted = () => {
      if (abort.signal.aborted) throw new CliExit(EXIT_INTERRUPTED);
    };
    // With --keep, Ctrl-C after the sample run is the way to end the demo, not an interruption.
    let kept = false;

    const dataDir = resolve(o.dataDir);
    const logDir = join(dataDir, "logs");
    const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];
    const t0 = Date.now();
    let exitCode = 0;
    try {
      say("stagebeam demo: starting a private redis-server (AOF, noeviction) and an embedded S3 server …");
      const redis = await startRedisServer();
      cleanups.push({ what: "redis-server", fn: () => redis.stop() });
      const s3 = await startS3Server({ dir: join(dataDir, "s3") });
      cleanups.push({ what: "S3 server", fn: () => s3.stop() });
      interrupted();

      const env: Record<string, string> = {
        REDIS_URL: redis.url,
        QUEUE_PREFIX: "{sb}",
        ...s3.env,
        WORKER_CONCURRENCY: String(o.concurrency),
      };
      say(`starting ${o.workers} worker processes (each loads the model once; logs in ${shown(logDir)}) …`);
      const workers: WorkerProcess[] = await startWorkerProcesses(o.workers, { env, logDir, readyTimeoutMs: 300_000 });
      cleanups.push({ what: "workers", fn: () => Promise.all(workers.map((w) => w.stop(60_000))) });
      interrupted();
      const model = workers[0]!.ready;
      say(`model ${model.model} (${model.digest.slice(0, 19)}…), ${o.workers} workers × concurrency ${o.concurrency}`);

      const config = loadConfig(env, ["redis", "s3", "logging"]);
      const logger = createLogger({ name: "demo", level: "warn" });
      const metrics = createMetrics();
      const fleet: Fleet = openFleet(config, metrics);
      cleanups.push({ what: "producer connections", fn: () => fleet.close() });
      // The demo is its fleet's one exporter too: its page carries the producer's series and
      // what `stagebeam exporter` exports (queue depth, job totals, Redis memory).
      const producerPage = createQueueExporter({ queues: fleet.queues.all, redis: fleet.redis, registry: metrics.registry });
      const producerServer: MetricsServer = await serveMetrics(producerPage, await freePort(), "127.0.0.1");
      cleanups.push({ what: "producer /metrics", fn: () => producerServer.close() });
      const producerMetricsUrl = `http://127.0.0.1:${producerServer.port}/metrics`;
      say("while it runs, Prometheus metrics are at:");
      for (const w of workers) say(`  worker ${w.index}: ${w.metricsUrl}`);
      say(`  producer: ${producerMetricsUrl}`);

      const run = `demo-${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-")}`;
      const manifest = join(resolve(o.sample), "items.jsonl");
      const submitBar = createProgress({ label: "submit", unit: "items" });
      const summary = await submitRun(
        {
          run,
          manifest,
          settings,
          signal: abort.signal,
          onProgress: (p) => submitBar.update(p.lines, p.total),
          onBadLine: (b) => submitBar.log(b.message),
        },
        { ...fleet, logger, metrics: producerMetrics(metrics.registry) },
      );
      submitBar.stop();
      interrupted();
      say(
        `run ${run}: ${summary.enqueued} items enqueued (${settings.strategy}, beam ${settings.beam}, judge ${settings.judgeMode}, seed ${settings.seed})`,
      );

      const itemsBar = createProgress({ label: "answering", unit: "items" });
      const counts = await waitForRun(run, fleet.ledger, {
        signal: abort.signal,
        onProgress: (c) => itemsBar.update(c.completed + c.failed, c.items, `| failed ${c.failed}`),
      });
      itemsBar.stop();
      interrupted();

      const results: ResultRecord[] = [];
      for await (const line of streamRecords(fleet.store, run, "results")) results.push(JSON.parse(line) as ResultRecord);
      const failures: FailureRecord[] = [];
      for await (const line of streamRecords(fleet.store, run, "failed")) failures.push(JSON.parse(line) as FailureRecord);
      results.sort((a, b) => a.line - b.line);

      const out: string[] = ["", answerTable(results)];
      const graded = results.filter((r) => r.correct !== null);
      const correct = graded.filter((r) => r.correct).length;
      out.push("");
      out.push(
        `${counts.completed} answered, ${counts.failed} failed · accuracy ${correct}/${graded.length}` +
          `${graded.length > 0 ? ` (${((100 * correct) / graded.length).toFixed(0)}%)` : ""} · ${counts.tokens} tokens · ${formatDuration((Date.now() - t0) / 1000)} in all`,
      );
      for (const f of failures) out.push(`failed: ${f.id ?? f.item}: ${f.reason}: ${f.message}`);

      // What the workers' /metrics say, scraped before they stop.
      const scraped = await Promise.all(
        workers.map(async (w) => {
          try {
            const page = await (await fetch(w.metricsUrl)).text();
            return (
              `  worker ${w.index} ${w.metricsUrl}: ${metricTotal(page, "stagebeam_items_completed_total")} items completed, ` +
              `${metricTotal(page, "stagebeam_tokens_generated_total")} tokens, ${metricTotal(page, "stagebeam_stage_latency_seconds_count")} stages timed`
            );
          } catch (err) {
            return `  worker ${w.index} ${w.metricsUrl}: not reachable (${(err as Error).message})`;
          }
        }),
      );
      const localCopy = join(dataDir, run, "results.jsonl");
      await mkdir(join(dataDir, run), { recursive: true });
      await writeFile(localCopy, results.map((r) => JSON.stringify(r)).join("\n") + (results.length > 0 ? "\n" : ""));

      out.push("");
      out.push(`results in S3:    s3://${s3.bucket}/runs/${run}/results/ (endpoint ${s3.endpoint}, stopped with the demo;`);
      out.push(`                  s3rver keeps the objects under ${shown(join(dataDir, "s3"))}/)`);
      out.push(`                  a copy as JSON lines: ${shown(localCopy)}`);
      out.push(`run manifest:     s3://${s3.bucket}/runs/${run}/manifest.json`);
      out.push(`metrics (while it ran):`);
      out.push(...scraped);
      out.push(`  producer ${producerMetricsUrl}`);
      process.stdout.write(`${out.join("\n")}\n`);
      if (counts.failed > 0) exitCode = EXIT_FAILURE;
      if (o.keep) {
        kept = true;
        process.stdout.write(`${keptFleetHelp(env, workers, producerMetricsUrl)}\n`);
        await new Promise((stop) => abort.signal.addEventListener("abort", stop, { once: true }));
      }
    } finally {
      say("shutting down: workers (SIGTERM), S3 server, redis-server …");
      for (const c of cleanups.reverse()) {
        try {
          await c.fn();
        } catch (err) {
          say(`  could not stop ${c.what}: ${(err as Error).message}`);
        }
      }
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    say("done.");
    if (exitCode !== 0) throw new CliExit(exitCode);
  });
