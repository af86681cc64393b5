/** `stagebeam retry --run NAME [--reason CODE]`: re-enqueue a run's failed items (workers/fleet/ops/retry.ts). */
import { Command } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { retryRun } from "../../../workers/fleet/ops/index.ts";
import { REASON_CODES } from "../../../workers/fleet/protocol/index.ts";
import { CliExit, EXIT_FAILURE } from "./common.ts";
import { openFleet } from "./fleet-connection.ts";

export const retryCommand = new Command("retry")
  .description("re-enqueue a run's failed items (all, or those failed for one reason) with the run's settings")
  .requiredOption("--run <name>", "run name")
  .option(
    "--reason <code>",
    `only items failed for this reason (as status lists them): ${Object.keys(REASON_CODES).join(", ")}; cancelled continues a cancelled run`,
  )
  .addHelpText(
    "after",
    "\nLocal images are read again (they must decode now). A bad manifest line cannot be retried: fix it and submit\nthe manifest again. Exit codes: 0 retried (or nothing to retry), 1 some items could not be retried, 2 bad usage.\nEnvironment: REDIS_URL, QUEUE_PREFIX, S3_* (see the README).",
  )
  .action(async (o: { run: string; reason?: string }) => {
    const fleet = openFleet(loadConfig(process.env, ["redis", "s3"]));
    try {
      const r = await retryRun(o.run, o.reason !== undefined ? { reason: o.reason } : {}, fleet);
      process.stdout.write(`run ${o.run}: ${r.retried} failed items re-enqueued${o.reason ? ` (reason ${o.reason})` : ""}\n`);
      if (r.duplicates > 0)
        process.stdout.write(
          `  ${r.duplicates} duplicate-id line${r.duplicates === 1 ? "" : "s"} left as error lines: an id that an earlier line has is not an item\n`,
        );
      if (r.continued && !r.continued.fed)
        process.stdout.write(
          r.continued.feedJob
            ? `  the run goes on: a worker's feed job feeds its manifest on from line ${r.continued.linesRead}\n`
            : `  the run goes on; its manifest was fed up to line ${r.continued.linesRead}: run the same submit again to feed the rest\n`,
        );
      for (const n of r.notRetried) process.stderr.write(`item ${n.item} (${n.reason}) not retried: ${n.why}\n`);
      if (r.notRetried.length > 0) throw new CliExit(EXIT_FAILURE);
    } finally {
      await fleet.close();
    }
  });
