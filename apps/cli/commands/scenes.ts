import { Command } from "commander";
import cliProgress from "cli-progress";
import { writeSceneSet } from "../../../shared/io/scene-files.ts";
import { intOption } from "./common.ts";

export const scenesCommand = new Command("scenes")
  .description("write a set of generated scenes (PNG files + items.jsonl) for evaluation or demos")
  .requiredOption("--out <dir>", "folder to write")
  .option("--count <n>", "number of items", intOption("--count", 1, 1_000_000), 100)
  .option("--seed <n>", "seed; the same seed gives byte-identical files", intOption("--seed", 0), 7)
  .action(async (options: { out: string; count: number; seed: number }) => {
    const bar = new cliProgress.SingleBar(
      { format: "scenes {bar} {value}/{total}", clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(options.count, 0);
    await writeSceneSet(options.out, { count: options.count, seed: options.seed, onItem: (done) => bar.update(done) });
    bar.stop();
    console.log(`wrote ${options.count} items to ${options.out}`);
  });
