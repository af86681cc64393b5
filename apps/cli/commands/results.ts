/** `stagebeam results --run NAME [--failed]`: every result (or failure record) as JSON lines on stdout. */
import { Command } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { S3Store } from "../../../shared/io/storage/s3-store.ts";
import { assertRunId } from "../../../shared/core/ids.ts";
import { UsageError } from "../../../shared/core/usage-error.ts";
import { streamRecords } from "../../../workers/fleet/ops/index.ts";
import { CliExit, EXIT_FAILURE, writeOut } from "./common.ts";

export const resultsCommand = new Command("results")
  .description("stream a run's results (or with --failed its failure records) from S3 as JSON lines")
  .requiredOption("--run <name>", "run name")
  .option("--failed", "failure records instead of results", false)
  .addHelpText(
    "after",
    "\nEnvironment: S3_* (see the README). Lines come in item-key order, one JSON object each; `stagebeam export` writes\nthem in manifest order as two files. Exit code 1 when the run has no such records (yet).",
  )
  .action(async (o: { run: string; failed: boolean }) => {
    try {
      assertRunId(o.run);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const config = loadConfig(process.env, ["s3"]);
    const store = S3Store.fromConfig(config.s3);
    process.stdout.on("error", () => {}); // a closed pipe (| head) ends the stream below
    try {
      let written = 0;
      for await (const line of streamRecords(store, o.run, o.failed ? "failed" : "results")) {
        written++;
        if (!(await writeOut(`${line}\n`))) break;
      }
      if (written === 0) {
        process.stderr.write(`stagebeam: run ${o.run} has no ${o.failed ? "failure records" : "results"} in S3 (yet)\n`);
        throw new CliExit(EXIT_FAILURE);
      }
    } finally {
      store.destroy();
    }
  });
