/** `stagebeam export --run NAME --format openai|jsonl --out FILE|s3://…`: the run's output and error files (workers/fleet/ops/export.ts). */
import { Command, Option } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { DEFAULT_RETENTION_SECONDS, EXPORT_FORMATS, exportRun, type ExportFormat } from "../../../workers/fleet/ops/index.ts";
import { CliExit, EXIT_FAILURE, EXIT_INTERRUPTED, intOption } from "./common.ts";
import { openFleet } from "./fleet-connection.ts";

export const exportCommand = new Command("export")
  .description("write a run's results as one output file and one error file, in manifest order, keyed by custom_id (or id)")
  .requiredOption("--run <name>", "run name")
  .addOption(new Option("--format <format>", "line format").choices(EXPORT_FORMATS).default("openai"))
  .option("--out <file|s3://bucket/key>", "output file; the error file is named after it (.errors.jsonl)")
  .option("--follow", "wait for unfinished items and write them as the run completes; end when the run is over", false)
  .option(
    "--retention <seconds>",
    "once exported, the run's Redis bookkeeping expires after this long",
    intOption("--retention", 1),
    DEFAULT_RETENTION_SECONDS,
  )
  .addHelpText(
    "after",
    "\nDefault --out: s3://<bucket>/runs/<run>/export/output.jsonl. Resumable: an export that stopped (Ctrl-C, a crash,\nan unfinished item without --follow) goes on from its last checkpoint when run again.\nExit codes: 0 both files written to the end, 1 stopped at an unfinished item, 2 bad usage, 130 interrupted.\nEnvironment: REDIS_URL, QUEUE_PREFIX, S3_* (see the README).",
  )
  .action(async (o: { run: string; format: ExportFormat; out?: string; follow: boolean; retention: number }) => {
    const config = loadConfig(process.env, ["redis", "s3"]);
    const fleet = openFleet(config);
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.on("SIGINT", onSigint);
    try {
      const out = o.out ?? fleet.store.uri(`runs/${o.run}/export/output.jsonl`);
      const r = await exportRun(
        o.run,
        { format: o.format, out, follow: o.follow, signal: abort.signal, retentionSeconds: o.retention },
        { ...fleet, prefix: config.redis.queuePrefix },
      );
      process.stdout.write(
        `run ${o.run}: ${r.lines.output} lines → ${r.files.output}\n${" ".repeat(o.run.length + 6)}${r.lines.errors} lines → ${r.files.errors}\n`,
      );
      if (abort.signal.aborted) throw new CliExit(EXIT_INTERRUPTED);
      if (!r.complete) {
        process.stderr.write("stagebeam: stopped at an item that has not finished; run again (or with --follow) to go on\n");
        throw new CliExit(EXIT_FAILURE);
      }
    } finally {
      process.off("SIGINT", onSigint);
      await fleet.close();
    }
  });
