/** `stagebeam cancel --run NAME`: stop a run on its own (workers/fleet/ops/cancel.ts says what happens to its work). */
import { Command } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { cancelRun } from "../../../workers/fleet/ops/index.ts";
import { CliExit, EXIT_FAILURE } from "./common.ts";
import { openFleet } from "./fleet-connection.ts";

export const cancelCommand = new Command("cancel")
  .description("cancel a run: stop feeding it, remove its waiting jobs, drop its work at the next step")
  .requiredOption("--run <name>", "run name")
  .addHelpText(
    "after",
    "\nWork already running (one generate or judge call) finishes; nothing new starts for the run, and every\nitem not finished is recorded as failed with reason cancelled. Other runs are not touched.\nExit codes: 0 cancelled, 1 no such run or it was already over.\nEnvironment: REDIS_URL, QUEUE_PREFIX, S3_* (see the README).",
  )
  .action(async (o: { run: string }) => {
    const fleet = openFleet(loadConfig(process.env, ["redis", "s3"]));
    try {
      const r = await cancelRun(o.run, fleet);
      if (r.from === null) {
        process.stderr.write(
          r.state === null
            ? `stagebeam: no run named ${JSON.stringify(o.run)}\n`
            : `stagebeam: run ${o.run} is already ${r.state}; nothing to cancel\n`,
        );
        throw new CliExit(EXIT_FAILURE);
      }
      process.stdout.write(`run ${o.run}: ${r.from} → cancelled; ${r.removed} waiting jobs removed\n`);
    } finally {
      await fleet.close();
    }
  });
