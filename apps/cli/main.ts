#!/usr/bin/env -S npx tsx
import { Command } from "commander";
import { scenesCommand } from "./commands/scenes.ts";

const program = new Command("stagebeam")
  .description("structured visual reasoning with stage-level beam search, from one machine to a fleet")
  .showHelpAfterError()
  .addCommand(scenesCommand);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  console.error(`stagebeam: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
