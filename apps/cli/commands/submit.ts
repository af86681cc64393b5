/**
 * `stagebeam submit`: enqueue a manifest as a run, or with --detach create the run and leave
 * the feeding to the fleet. Idempotent (re-running adds nothing twice) and resumable (Ctrl-C,
 * then the same command again). Exit codes: 0 submitted (bad lines are reported and recorded,
 * not fatal), 1 runtime failure or a run that could not proceed (nothing enqueueable, a wrong
 * header, over --max-bad-lines), 2 bad usage or configuration (checked before anything is
 * enqueued), 130 interrupted.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { createLogger } from "../../../shared/io/logging.ts";
import { createMetrics, serveMetrics, type MetricsServer } from "../../../shared/io/metrics.ts";
import {
  DEFAULT_CHUNK_SIZE,
  DEFAULT_MAX_BACKLOG,
  producerMetrics,
  submitRun,
  type SubmitSummary,
} from "../../../workers/fleet/feed/index.ts";
import { formatDuration } from "../../../shared/core/duration.ts";
import { formatStatus, runStatus, waitForRun } from "../../../workers/fleet/ops/index.ts";
import type { BadLineLimit } from "../../../workers/fleet/books/index.ts";
import { CliExit, EXIT_FAILURE, EXIT_INTERRUPTED, intOption } from "./common.ts";
import { openFleet } from "./fleet-connection.ts";
import { createProgress, type Progress } from "./progress.ts";
import { addSearchOptions, searchSettings, type SearchCliOptions } from "./search-options.ts";

interface SubmitCliOptions extends SearchCliOptions {
  run: string;
  manifest: string;
  question?: string;
  imageRoot?: string;
  format?: "jsonl" | "csv";
  maxBacklog: number;
  chunk: number;
  maxBadLines?: BadLineLimit;
  detach: boolean;
  wait: boolean;
  progress: boolean;
}

/** `--max-bad-lines 10` or `--max-bad-lines 0.5%`. */
export function badLineLimitOption(value: string): BadLineLimit {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(value);
  const n = m ? Number(m[1]) : Number.NaN;
  if (!m || (m[2] === "" && !Number.isInteger(n)) || (m[2] === "%" && n > 100))
    throw new InvalidArgumentError(
      `--max-bad-lines must be a whole number of lines (10) or a percentage up to 100 (0.5%), got '${value}'`,
    );
  return m[2] === "%" ? { percent: n } : { lines: n };
}

export function formatSummary(s: SubmitSummary): string {
  if (s.detached) {
    return [
      `run ${s.run}: created, state ${s.state}; the fleet feeds its manifest (a worker runs the feed job)`,
      `  follow it with: stagebeam status --run ${s.run}`,
    ].join("\n");
  }
  const lines = [
    `run ${s.run}: ${s.lines} manifest lines in ${formatDuration(s.seconds)}${s.resumedAt > 0 ? ` (resumed after line ${s.resumedAt})` : ""}${s.interrupted ? " (interrupted: run the same command again to resume)" : ""}`,
    `  state      ${s.state}${s.reason ? ` — ${s.reason}` : ""}`,
    `  enqueued   ${s.enqueued}`,
    `  skipped    ${s.skipped} (already submitted)`,
    `  bad lines  ${s.bad} (recorded under runs/${s.run}/failed/)`,
  ];
  if (s.duplicates > 0) lines.push(`  duplicates ${s.duplicates} (ids that an earlier line already has; skipped)`);
  lines.push(`  images     ${s.imagesUploaded} uploaded, ${s.imagesReused} already staged`);
  lines.push(
    `  settings   strategy ${s.settings.strategy} · beam ${s.settings.beam} · judge ${s.settings.judgeMode} · seed ${s.settings.seed}`,
  );
  return lines.join("\n");
}

/** The configuration `submit` reads (deployment manifests are checked against it). */
export const SUBMIT_CONFIG_PARTS = ["redis", "s3", "metrics", "logging"] as const;

export const submitCommand = addSearchOptions(new Command("submit"))
  .description(
    "submit a manifest (JSONL/CSV with id,image,question[,answer], the OpenAI batch format, or a folder of images) as a run",
  )
  .requiredOption("--run <name>", "run name: results go to runs/<name>/ in S3")
  .requiredOption(
    "--manifest <file|dir|-|s3://bucket/key>",
    "manifest.jsonl or .csv (gzip accepted), a folder of images, - for stdin, or an S3 object",
  )
  .option("--question <text>", "the question for every image (folder manifests)")
  .option(
    "--image-root <dir>",
    "local images may lie anywhere inside this folder, through symlinks too (default: the manifest's folder; relative paths still resolve against it, or the current directory for stdin)",
  )
  .addOption(new Option("--format <format>", "manifest format (default: from the extension)").choices(["jsonl", "csv"]))
  .option(
    "--max-backlog <n>",
    "pause while more than this many items are unfinished in the queue",
    intOption("--max-backlog", 1),
    DEFAULT_MAX_BACKLOG,
  )
  .option("--chunk <n>", "items per addBulk", intOption("--chunk", 1, 10_000), DEFAULT_CHUNK_SIZE)
  .option("--max-bad-lines <n|p%>", "stop the run in state failed once it has more bad lines than this", badLineLimitOption)
  .option("--detach", "create the run, put the manifest in S3 and return; a fleet worker feeds it", false)
  .option("--wait", "wait until every item has finished, then print the run's status", false)
  .option("--no-progress", "no progress bar or progress lines")
  .addHelpText(
    "after",
    "\nEnvironment: REDIS_URL, QUEUE_PREFIX, S3_* (see the README); METRICS_PORT, when set, serves /metrics while it runs.",
  )
  .action(async (o: SubmitCliOptions) => {
    // Settings first: a bad strategy or beam is an error before anything is touched.
    const settings = searchSettings(o);
    const config = loadConfig(process.env, SUBMIT_CONFIG_PARTS);
    const logger = createLogger({ name: "producer", level: config.logging.level });
    const metrics = createMetrics();
    const pm = producerMetrics(metrics.registry);
    const fleet = openFleet(config, metrics);
    let server: MetricsServer | undefined;
    if (config.metrics.requested) {
      server = await serveMetrics(metrics.registry, config.metrics.port);
      process.stderr.write(`producer metrics: http://127.0.0.1:${server.port}/metrics\n`);
    }

    const abort = new AbortController();
    const onSigint = () => {
      if (abort.signal.aborted) process.exit(EXIT_INTERRUPTED);
      process.stderr.write("\ninterrupted: nothing more is enqueued; the run stays resumable (Ctrl-C again to quit now)\n");
      abort.abort();
    };
    process.on("SIGINT", onSigint);
    process.on("SIGTERM", onSigint);

    // Started by the first progress report, so that a submit refused up front prints no empty bar.
    let bar: Progress | undefined;
    const progress = () => (bar ??= o.progress ? createProgress({ label: "submit", unit: "lines" }) : undefined);
    try {
      const summary = await submitRun(
        {
          run: o.run,
          manifest: o.manifest,
          ...(o.format !== undefined ? { format: o.format } : {}),
          ...(o.question !== undefined ? { question: o.question } : {}),
          ...(o.imageRoot !== undefined ? { imageRoot: o.imageRoot } : {}),
          settings,
          maxBacklog: o.maxBacklog,
          chunkSize: o.chunk,
          detach: o.detach,
          ...(o.maxBadLines !== undefined ? { maxBadLines: o.maxBadLines } : {}),
          signal: abort.signal,
          onProgress: (p) =>
            progress()?.update(
              p.lines,
              p.total,
              `| enqueued ${p.enqueued} skipped ${p.skipped} bad ${p.bad}${p.throttled ? ` | backlog full (${p.backlog}), waiting` : ""}`,
            ),
          onBadLine: (b) => {
            const msg = `${b.message} → recorded as failed (${b.reason})`;
            if (bar) bar.log(msg);
            else process.stderr.write(`${msg}\n`);
          },
          onWarning: (w) => {
            if (bar) bar.log(`warning: ${w}`);
            else process.stderr.write(`warning: ${w}\n`);
          },
          onDuplicate: (d) => {
            const msg = `line ${d.line}: id ${JSON.stringify(d.id)} already used on line ${d.firstLine}; skipped`;
            if (bar) bar.log(msg);
            else process.stderr.write(`${msg}\n`);
          },
        },
        { ...fleet, logger, metrics: pm },
      );
      bar?.stop();
      process.stdout.write(`${formatSummary(summary)}\n`);
      if (summary.interrupted) throw new CliExit(EXIT_INTERRUPTED);
      if (summary.state === "failed") {
        process.stderr.write(`stagebeam: run ${o.run} failed: ${summary.reason}\n`);
        throw new CliExit(EXIT_FAILURE);
      }

      if (o.wait) {
        const items = createProgress({
          label: "items",
          unit: "items",
          plain: o.progress ? undefined : true,
          everySeconds: o.progress ? 5 : 30,
        });
        await waitForRun(o.run, fleet.ledger, {
          runs: fleet.runs,
          signal: abort.signal,
          onProgress: (c) => items.update(c.completed + c.failed, c.items, `| completed ${c.completed} failed ${c.failed}`),
        });
        items.stop();
        process.stdout.write(`${formatStatus(await runStatus(o.run, fleet))}\n`);
        if (abort.signal.aborted) throw new CliExit(EXIT_INTERRUPTED);
      }
    } finally {
      bar?.stop();
      process.off("SIGINT", onSigint);
      process.off("SIGTERM", onSigint);
      await server?.close();
      await fleet.close();
    }
  });
