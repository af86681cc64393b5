/**
 * What every command's help and usage errors look like: an example in each `--help`, required
 * options marked, and a usage error as one line of error plus a pointer to `--help` (exit 2),
 * instead of the error followed by the whole help page.
 */
import { type Command, Help, type Option } from "commander";

/**
 * Examples per command path (`model check` for a nested one): whole command lines, run as written
 * from a clone after `npm run demo -- --keep` or on a machine with the fleet's environment set.
 */
export const EXAMPLES: Readonly<Record<string, readonly string[]>> = {
  "": [
    "stagebeam ask --image apps/demo/sample/s42-000000.png --question 'How many red objects are there?'",
    "stagebeam submit --run photos-1 --manifest items.jsonl && stagebeam status --run photos-1 --watch 5",
  ],
  ask: [
    "stagebeam ask --image apps/demo/sample/s42-000000.png --question 'How many red objects are there?'",
    "stagebeam ask --image scene.png --question 'Is the cube left of the sphere?' --strategy best-of-n --beam 8 --json",
  ],
  eval: [
    "stagebeam eval --set apps/demo/sample --limit 10",
    "stagebeam eval --set items.jsonl --compare stage:2,stage:4,vote:4 --out per-item.csv",
    "stagebeam eval --set apps/demo/sample --compare stage:4:score,stage:4:score:no-merge,stage:4:verifier:resample2@CAPTION",
  ],
  scenes: ["stagebeam scenes --out scenes-200 --count 200 --seed 7"],
  worker: [
    "stagebeam worker --concurrency 8",
    "REDIS_URL=redis://:secret@redis:6379 MODEL_DIR=/models/m stagebeam worker --name gpu-0",
  ],
  submit: [
    "stagebeam submit --run photos-1 --manifest items.jsonl",
    "stagebeam submit --run batch-7 --manifest s3://in/batch.jsonl --detach",
    "stagebeam submit --run folder-1 --manifest ./photos --question 'What is in the picture?' --wait",
  ],
  status: ["stagebeam status --run photos-1", "stagebeam status --run photos-1 --watch 10"],
  results: ["stagebeam results --run photos-1 > results.jsonl", "stagebeam results --run photos-1 --failed | head"],
  runs: ["stagebeam runs", "stagebeam runs --json"],
  cancel: ["stagebeam cancel --run photos-1"],
  retry: ["stagebeam retry --run photos-1", "stagebeam retry --run photos-1 --reason image-unreadable"],
  export: ["stagebeam export --run photos-1 --out output.jsonl", "stagebeam export --run batch-7 --format openai --follow"],
  demo: ["stagebeam demo", "stagebeam demo --workers 3 --keep"],
  model: ["stagebeam model check models/stagebeam-tiny", "stagebeam model export ~/hf/Llama-3.2V-11B-cot --out ~/vlm/llava-cot"],
  "model export": [
    "stagebeam model export ~/hf/Llama-3.2V-11B-cot --out ~/vlm/llava-cot --dtype fp16",
    "PYTHON=/opt/venv/bin/python stagebeam model export ./my-mllama --out ./my-mllama-onnx --dtype all",
  ],
  "model check": ["stagebeam model check models/stagebeam-tiny", "stagebeam model check /models/llava-cot --dtype q4 --json"],
  verifier: ["stagebeam verifier calibrate --set calib-150 --verifier models/stagebeam-tiny-prm"],
  "verifier calibrate": [
    "stagebeam scenes --out calib-150 --count 150 --seed 55 && stagebeam verifier calibrate --set calib-150 --verifier models/stagebeam-tiny-prm",
    "stagebeam verifier calibrate --set my-set.jsonl --verifier /models/my-prm --limit 100 --dry-run",
  ],
  dashboard: ["stagebeam dashboard", "stagebeam dashboard --host 0.0.0.0 --port 8080"],
  exporter: ["stagebeam exporter", "METRICS_PORT=9400 stagebeam exporter"],
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
  if (examples !== undefined) c.addHelpText("after", `\nExamples:\n${examples.map((line) => `  $ ${line}`).join("\n")}`);
  c.commands.forEach(withManners);
  return c;
}
