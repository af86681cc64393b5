/** `stagebeam status --run NAME`: counts, throughput, ETA, failures by reason, accuracy so far. */
import { Command } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { formatStatus, runStatus } from "../../../workers/fleet/ops/index.ts";
import { CliExit, EXIT_FAILURE, secondsOption } from "./common.ts";
import { openFleet } from "./fleet-connection.ts";

export const statusCommand = new Command("status")
  .description("show a run's progress: items by state, throughput, ETA, failures by reason, accuracy so far")
  .requiredOption("--run <name>", "run name")
  .option("--json", "print the status as one JSON object", false)
  .option("--watch <seconds>", "print again every so many seconds until the run is done", secondsOption("--watch"))
  .addHelpText("after", "\nEnvironment: REDIS_URL, QUEUE_PREFIX, S3_* (see the README).")
  .action(async (o: { run: string; json: boolean; watch?: number }) => {
    const config = loadConfig(process.env, ["redis", "s3"]);
    const fleet = openFleet(config);
    try {
      for (;;) {
        const s = await runStatus(o.run, fleet);
        if (s.manifest === null && s.counts.items === 0 && s.counts.createdAt === null) {
          process.stderr.write(`stagebeam: no run named ${JSON.stringify(o.run)} (nothing in Redis or S3)\n`);
          throw new CliExit(EXIT_FAILURE);
        }
        process.stdout.write(o.json ? `${JSON.stringify(s)}\n` : `${formatStatus(s)}\n`);
        if (o.watch === undefined || s.done) break;
        process.stdout.write("\n");
        await new Promise((r) => setTimeout(r, Math.max(0.2, o.watch!) * 1000));
      }
    } finally {
      await fleet.close();
    }
  });
