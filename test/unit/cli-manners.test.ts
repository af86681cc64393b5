/**
 * Every command's help has an example and marks its required options; a usage error is one line
 * and a pointer to --help, with exit code 2. Runs the real command definitions, without running
 * any command's action.
 */
import { Command, CommanderError } from "commander";
import { beforeAll, describe, expect, it } from "vitest";
import { exitCodeFor } from "../../apps/cli/commands/common.ts";
import { commandPath, withManners } from "../../apps/cli/manners.ts";
import { SUBCOMMANDS } from "../../apps/cli/subcommands.ts";

let program: Command;
let out = "";
let err = "";

function collect(c: Command): Command[] {
  return [c, ...c.commands.flatMap(collect)];
}

beforeAll(async () => {
  program = new Command("stagebeam");
  for (const load of SUBCOMMANDS.values()) program.addCommand(await load());
  withManners(program);
  const writeOut = (s: string) => {
    out += s;
  };
  const writeErr = (s: string) => {
    err += s;
  };
  for (const c of collect(program)) c.configureOutput({ writeOut, writeErr });
}, 60_000);

/** What `stagebeam <args>` printed on stderr and the exit code it would give. */
async function parse(args: string[]): Promise<{ code: number; stderr: string }> {
  out = "";
  err = "";
  try {
    await program.parseAsync(args, { from: "user" });
    return { code: 0, stderr: err };
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    return { code: exitCodeFor(error), stderr: err };
  }
}

function helpOf(c: Command): string {
  out = "";
  c.outputHelp();
  return out;
}

describe("the command's manners", () => {
  it("every command's help ends with examples of that very command", () => {
    for (const c of collect(program)) {
      const help = helpOf(c);
      const name = commandPath(c).replace(/^stagebeam ?/, "");
      expect(help, commandPath(c)).toMatch(/\nExamples:\n {2}\$ stagebeam /);
      const examples = help.slice(help.indexOf("\nExamples:\n")).split("\n").slice(2).filter(Boolean);
      expect(
        examples.some((line) => line.includes(`$ stagebeam ${name}`) || line.includes(` stagebeam ${name} `)),
        commandPath(c),
      ).toBe(true);
    }
  });

  it("marks every required option, and only those", () => {
    for (const c of collect(program)) {
      const help = helpOf(c);
      for (const option of c.options) {
        const line = help.split("\n").find((l) => l.trimStart().startsWith(option.flags));
        expect(line, `${commandPath(c)} ${option.flags}`).toBeDefined();
        const rest = help.slice(help.indexOf(line!)).split(/\n {2}-/)[0]!;
        expect(rest.includes("(required)"), `${commandPath(c)} ${option.flags}`).toBe(option.mandatory);
      }
    }
  });

  it("a missing required option is one line of error and a pointer to --help, exit 2", async () => {
    const r = await parse(["status"]);
    expect(r).toEqual({
      code: 2,
      stderr: "error: required option '--run <name>' not specified\nRun 'stagebeam status --help' for usage and examples.\n",
    });
  });

  it("an empty question, an unknown option and an out-of-range number are usage errors too", async () => {
    const empty = await parse(["ask", "--image", "x.png", "--question", " "]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/--question must not be empty\nRun 'stagebeam ask --help' for usage and examples.\n$/);
    const unknown = await parse(["runs", "--jsno"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe(
      "error: unknown option '--jsno'\n(Did you mean --json?)\nRun 'stagebeam runs --help' for usage and examples.\n",
    );
    const tokens = await parse(["ask", "--image", "x.png", "--question", "q", "--max-stage-tokens", "100000"]);
    expect(tokens.code).toBe(2);
    expect(tokens.stderr).toMatch(/--max-stage-tokens must be a whole number from 1 to 65536, got '100000'/);
  });
});
