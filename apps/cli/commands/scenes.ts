import { Command, InvalidArgumentError } from "commander";
import cliProgress from "cli-progress";
import { writeSceneSet } from "../../../shared/scenes/dataset.ts";

export const positiveInt = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a whole number ≥ 1, got '${value}'`);
  return n;
};

export const nonNegativeInt = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number ≥ 0, got '${value}'`);
  return n;
};

export const scenesCommand = new Command("scenes")
  .description("write a set of generated scenes (PNG files + items.jsonl) for evaluation or demos")
  .requiredOption("--out <dir>", "folder to write")
  .option("--count <n>", "number of items", positiveInt("--count"), 100)
  .option("--seed <n>", "seed; the same seed gives byte-identical files", nonNegativeInt("--seed"), 7)
  .action(async (options: { out: string; count: number; seed: number }) => {
    const bar = new cliProgress.SingleBar({ format: "scenes {bar} {value}/{total}", clearOnComplete: true }, cliProgress.Presets.shades_classic);
    bar.start(options.count, 0);
    await writeSceneSet(options.out, { count: options.count, seed: options.seed, onItem: (done) => bar.update(done) });
    bar.stop();
    console.log(`wrote ${options.count} items to ${options.out}`);
  });
