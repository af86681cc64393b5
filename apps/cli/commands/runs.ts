/** `stagebeam runs`: every run the fleet knows, newest first, with its state, counts and age. */
import { Command } from "commander";
import { formatDuration } from "../../../shared/core/duration.ts";
import { loadConfig } from "../../../shared/io/config.ts";
import { listRuns, type RunListing } from "../../../workers/fleet/ops/index.ts";
import { openFleet } from "./fleet-connection.ts";

export function formatRuns(rows: readonly RunListing[], now = Date.now()): string {
  if (rows.length === 0) return "no runs";
  const head = `${"run".padEnd(28)}${"state".padEnd(13)}${"items".padStart(9)}${"done".padStart(9)}${"failed".padStart(9)}${"pending".padStart(9)}  age`;
  const lines = rows.map((r) => {
    const feed = r.fed ? "" : ` (feeding: ${r.linesRead} lines read)`;
    const why = r.reason ? ` — ${r.reason}` : "";
    return `${r.run.padEnd(28)}${r.state.padEnd(13)}${String(r.counts.items).padStart(9)}${String(r.counts.completed).padStart(9)}${String(r.counts.failed).padStart(9)}${String(r.pending).padStart(9)}  ${formatDuration((now - r.createdAt) / 1000)}${feed}${why}`;
  });
  return [head, ...lines].join("\n");
}

export const runsCommand = new Command("runs")
  .description("list the fleet's runs, newest first: state, items, completed, failed, pending, age")
  .option("--json", "one JSON object per run", false)
  .addHelpText("after", "\nEnvironment: REDIS_URL, QUEUE_PREFIX, S3_* (see the README).")
  .action(async (o: { json: boolean }) => {
    const fleet = openFleet(loadConfig(process.env, ["redis", "s3"]));
    try {
      const rows = await listRuns(fleet);
      process.stdout.write(o.json ? rows.map((r) => `${JSON.stringify(r)}\n`).join("") : `${formatRuns(rows)}\n`);
    } finally {
      await fleet.close();
    }
  });
