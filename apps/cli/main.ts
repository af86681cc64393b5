#!/usr/bin/env -S npx tsx
import { Command, CommanderError } from "commander";
import { CliExit, exitCodeFor } from "./commands/common.ts";
import { askCommand } from "./commands/ask.ts";
import { demoCommand } from "./commands/demo.ts";
import { evalCommand } from "./commands/eval.ts";
import { resultsCommand } from "./commands/results.ts";
import { scenesCommand } from "./commands/scenes.ts";
import { statusCommand } from "./commands/status.ts";
import { submitCommand } from "./commands/submit.ts";
import { workerCommand } from "./commands/worker.ts";

const program = new Command("stagebeam")
  .description("structured visual reasoning with stage-level beam search, from one machine to a fleet")
  .addCommand(askCommand)
  .addCommand(evalCommand)
  .addCommand(scenesCommand)
  .addCommand(workerCommand)
  .addCommand(submitCommand)
  .addCommand(statusCommand)
  .addCommand(resultsCommand)
  .addCommand(demoCommand)
  .addHelpText("after", "\nExit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.");

// Usage errors exit 2 (commander's default is 1); --help exits 0.
const configure = (c: Command) => {
  c.exitOverride().showHelpAfterError();
  c.commands.forEach(configure);
};
configure(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  // Commander and CliExit have already said what went wrong.
  if (!(error instanceof CommanderError) && !(error instanceof CliExit && error.message === "")) {
    console.error(`stagebeam: ${error instanceof Error ? error.message : String(error)}`);
  }
  process.exitCode = exitCodeFor(error);
}
