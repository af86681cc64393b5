import { Command, CommanderError } from "commander";
import { UsageError } from "../../shared/core/usage-error.ts";
import { redactSecrets } from "../../shared/io/secrets.ts";
import { VERSION } from "../../shared/io/version.ts";
import { CliExit, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exitCodeFor } from "./commands/common.ts";
import { helpPointer, withManners } from "./manners.ts";
import { SUBCOMMANDS } from "./subcommands.ts";

const VERSION_FLAGS = ["-V", "--version"];

const program = new Command("stagebeam")
  .description("structured visual reasoning with stage-level beam search, from one machine to a fleet")
  .version(VERSION)
  .addHelpText(
    "after",
    `\nExit codes: ${EXIT_OK} success, ${EXIT_FAILURE} runtime failure, ${EXIT_USAGE} bad usage or configuration, ${EXIT_INTERRUPTED} interrupted.`,
  );

// The command whose action runs, for the pointer under a usage error found by the action itself.
let running: Command = program;
program.hook("preAction", (_, actionCommand) => {
  running = actionCommand;
});

try {
  const first = process.argv[2] ?? "";
  const chosen = SUBCOMMANDS.get(first);
  const needed = chosen ? [chosen] : VERSION_FLAGS.includes(first) ? [] : [...SUBCOMMANDS.values()];
  for (const load of needed) program.addCommand(await load());
  withManners(program);
  await program.parseAsync(process.argv);
} catch (error) {
  // Commander and CliExit have already said what went wrong.
  if (!(error instanceof CommanderError) && !(error instanceof CliExit && error.message === "")) {
    console.error(redactSecrets(`stagebeam: ${error instanceof Error ? error.message : String(error)}`));
    if (error instanceof UsageError) console.error(helpPointer(running));
  }
  process.exitCode = exitCodeFor(error);
}
