/**
 * What every command's help and usage errors look like: an example in each `--help`, required
 * options marked, and a usage error as one line of error plus a pointer to `--help` (exit 2),
 * instead of the error followed by the whole help page.
 */
import { type Command, Help, type Option } from "commander";

/**
 * Examples per command path (`model check` for a nested one). One line each, run as written from
 * a clone after `npm run demo -- --keep` or on a machine with the fleet's environment set.
 */
export const EXAMPLES: Readonly<Record<string, readonly string[]>> = {
  "": [
    "ask --image apps/demo/sample/s42-000000.png --question 'How many red objects are there?'",
    "submit --run photos-1 --manifest items.jsonl && stagebeam status --run photos-1 --watch 5",
  ],
  ask: [
    "ask --image apps/demo/sample/s42-000000.png --question 'How many red objects are there?'",
    "ask --image scene.png --question 'Is the cube left of the sphere?' --strategy best-of-n --beam 8 --json",
  ],
  eval: ["eval --set apps/demo/sample --limit 10", "eval --set items.jsonl --compare stage:2,stage:4,vote:4 --out per-item.csv"],
  scenes: ["scenes --out scenes-200 --count 200 --seed 7"],
  worker: ["worker --concurrency 8", "REDIS_URL=redis://:secret@redis:6379 MODEL_DIR=/models/m worker --name gpu-0"],
  submit: [
    "submit --run photos-1 --manifest items.jsonl",
    "submit --run batch-7 --manifest s3://in/batch.jsonl --detach",
    "submit --run folder-1 --manifest ./photos --question 'What is in the picture?' --wait",
  ],
  status: ["status --run photos-1", "status --run photos-1 --watch 10"],
  results: ["results --run photos-1 > results.jsonl", "results --run photos-1 --failed | head"],
  runs: ["runs", "runs --json"],
  cancel: ["cancel --run photos-1"],
  retry: ["retry --run photos-1", "retry --run photos-1 --reason image-unreadable"],
  export: ["export --run photos-1 --out output.jsonl", "export --run batch-7 --format openai --follow"],
  demo: ["demo", "demo --workers 3 --keep"],
  model: ["model check models/stagebeam-tiny"],
  "model check": ["model check models/stagebeam-tiny", "model check /models/llava-cot --dtype q4 --json"],
  dashboard: ["dashboard", "dashboard --host 0.0.0.0 --port 8080"],
  exporter: ["exporter", "METRICS_PORT=9400 exporter"],
};

/** `stagebeam model check` for the check command, `stagebeam` for the program. */
export function commandPath(c: Command): string {
  const names: string[] = [];
  for (let at: Command | null = c; at !== null; at = at.parent) names.unshift(at.name());
  return names.join(" ");
}

const pathKey = (c: Command) => commandPath(c).split(" ").slice(1).join(" ");

/** The pointer printed under a usage error. */
export const helpPointer = (c: Command) => `Run '${commandPath(c)} --help' for usage and examples.`;

/** Commander's option description, with "(required)" on a required option. */
function optionDescription(this: Help, option: Option): string {
  const text = Help.prototype.optionDescription.call(this, option);
  return option.mandatory ? `${text} (required)` : text;
}

/**
 * Applies the manners to a command and its subcommands: usage errors throw (exit 2, see
 * common.ts) after one line of error and the pointer; help marks required options and ends
 * with the command's examples. A command without examples is a mistake the unit test catches.
 */
export function withManners(c: Command): Command {
  c.exitOverride().showHelpAfterError(helpPointer(c)).configureHelp({ optionDescription });
  const examples = EXAMPLES[pathKey(c)];
  if (examples !== undefined)
    c.addHelpText("after", `\nExamples:\n${examples.map((line) => `  $ stagebeam ${line}`).join("\n")}`);
  c.commands.forEach(withManners);
  return c;
}
