/** `stagebeam retry --run NAME [--reason CODE]`: re-enqueue a run's failed items (workers/fleet/ops/retry.ts). */
import { Command } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { retryRun } from "../../../workers/fleet/ops/index.ts";
import { CliExit, EXIT_FAILURE } from "./common.ts";
import { openFleet } from "./fleet-connection.ts";

export const retryCommand = new Command("retry")
  .description("re-enqueue a run's failed items (all, or those failed for one reason) with the run's settings")
  .requiredOption("--run <name>", "run name")
  .option("--reason <code>", "only items failed for this reason (as status lists them, e.g. image-unreadable)")
  .addHelpText(
    "after",
    "\nLocal images are read again (they must decode now). A bad manifest line cannot be retried: fix it and submit\nthe manifest again. Exit codes: 0 retried (or nothing to retry), 1 some items could not be retried, 2 bad usage.\nEnvironment: REDIS_URL, QUEUE_PREFIX, S3_* (see the README).",
  )
  .action(async (o: { run: string; reason?: string }) => {
    const fleet = openFleet(loadConfig(process.env, ["redis", "s3"]));
    try {
      const r = await retryRun(o.run, o.reason !== undefined ? { reason: o.reason } : {}, fleet);
      process.stdout.write(`run ${o.run}: ${r.retried} failed items re-enqueued${o.reason ? ` (reason ${o.reason})` : ""}\n`);
      for (const n of r.notRetried) process.stderr.write(`item ${n.item} (${n.reason}) not retried: ${n.why}\n`);
      if (r.notRetried.length > 0) throw new CliExit(EXIT_FAILURE);
    } finally {
      await fleet.close();
    }
  });
