import { Command, CommanderError } from "commander";
import { redactSecrets } from "../../shared/io/secrets.ts";
import { VERSION } from "../../shared/io/version.ts";
import { CliExit, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exitCodeFor } from "./commands/common.ts";

/**
 * Each subcommand's module, imported only when that subcommand runs, so that `ask` and `eval`
 * (and `model`) load no BullMQ or Redis client; all of them for the overall help or an unknown command, none
 * for --version.
 */
const SUBCOMMANDS = new Map<string, () => Promise<Command>>([
  ["ask", async () => (await import("./commands/ask.ts")).askCommand],
  ["eval", async () => (await import("./commands/eval.ts")).evalCommand],
  ["scenes", async () => (await import("./commands/scenes.ts")).scenesCommand],
  ["worker", async () => (await import("./commands/worker.ts")).workerCommand],
  ["submit", async () => (await import("./commands/submit.ts")).submitCommand],
  ["status", async () => (await import("./commands/status.ts")).statusCommand],
  ["results", async () => (await import("./commands/results.ts")).resultsCommand],
  ["runs", async () => (await import("./commands/runs.ts")).runsCommand],
  ["cancel", async () => (await import("./commands/cancel.ts")).cancelCommand],
  ["retry", async () => (await import("./commands/retry.ts")).retryCommand],
  ["export", async () => (await import("./commands/export.ts")).exportCommand],
  ["demo", async () => (await import("./commands/demo.ts")).demoCommand],
  ["model", async () => (await import("./commands/model.ts")).modelCommand],
  ["verifier", async () => (await import("./commands/verifier.ts")).verifierCommand],
  ["dashboard", async () => (await import("./commands/dashboard.ts")).dashboardCommand],
  ["exporter", async () => (await import("./commands/exporter.ts")).exporterCommand],
]);

const VERSION_FLAGS = ["-V", "--version"];

const program = new Command("stagebeam")
  .description("structured visual reasoning with stage-level beam search, from one machine to a fleet")
  .version(VERSION)
  .addHelpText(
    "after",
    `\nExit codes: ${EXIT_OK} success, ${EXIT_FAILURE} runtime failure, ${EXIT_USAGE} bad usage or configuration, ${EXIT_INTERRUPTED} interrupted.`,
  );

// Usage errors exit 2 (commander's default is 1); --help exits 0.
const configure = (c: Command) => {
  c.exitOverride().showHelpAfterError();
  c.commands.forEach(configure);
};

try {
  const first = process.argv[2] ?? "";
  const chosen = SUBCOMMANDS.get(first);
  const needed = chosen ? [chosen] : VERSION_FLAGS.includes(first) ? [] : [...SUBCOMMANDS.values()];
  for (const load of needed) program.addCommand(await load());
  configure(program);
  await program.parseAsync(process.argv);
} catch (error) {
  // Commander and CliExit have already said what went wrong.
  if (!(error instanceof CommanderError) && !(error instanceof CliExit && error.message === "")) {
    console.error(redactSecrets(`stagebeam: ${error instanceof Error ? error.message : String(error)}`));
  }
  process.exitCode = exitCodeFor(error);
}
