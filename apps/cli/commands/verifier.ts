/**
 * `stagebeam verifier calibrate`: measures a verifier's own population of reasoning scores on a
 * calibration set and writes it into the folder's verifier.json (`calibration`), where swires
 * reads its retrace cutoff (shared/core/verifier/calibration.ts). Every reasoning candidate that
 * swires samples on an item (its first pass, no retrace) is scored by this verifier, as the
 * retrace test sees them.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import { toItemId } from "../../../shared/core/ids.ts";
import { runSearch } from "../../../shared/core/search/drive.ts";
import { DEFAULT_SWIRES } from "../../../shared/core/search/params.ts";
import { paramsFor, parseSearchSettings } from "../../../shared/core/search/settings.ts";
import { UsageError } from "../../../shared/core/usage-error.ts";
import { calibrationOf, VERIFIER_FILE, VerifierTemplateSchema } from "../../../shared/core/verifier/index.ts";
import { readEvalSet } from "../../../shared/io/eval-set.ts";
import { intOption } from "./common.ts";
import { openItemExecutor } from "../../../workers/engine/index.ts";
import { loadLocalEngine, loadLocalVerifier } from "./local-engine.ts";
import { createProgress } from "./progress.ts";

interface CalibrateOptions {
  set: string;
  verifier: string;
  model?: string;
  limit?: number;
  seed: number;
  concurrency: number;
  dryRun: boolean;
  describe?: string;
}

const calibrate = new Command("calibrate")
  .description("measure the verifier's reasoning-score mean and sd on a set, and write them into its verifier.json")
  .requiredOption("--set <dir|file>", "calibration items (any set `eval` takes; the gold answers are not used)")
  .requiredOption("--verifier <dir>", "the verifier folder whose verifier.json gets the statistics")
  .option("--model <dir>", "policy model that samples the reasonings (default: MODEL_DIR, else the bundled model)")
  .option("--limit <n>", "only the first N items", intOption("--limit", 1))
  .option("--seed <n>", "seed of the sampled reasonings", intOption("--seed", 0), 1)
  .option("--concurrency <n>", "items in flight at once", intOption("--concurrency", 1, 256), 8)
  .option("--describe <text>", "how the set was made, kept with the statistics (default: the --set path)")
  .option("--dry-run", "print the statistics without writing them", false)
  .action(async (o: CalibrateOptions) => {
    const set = await readEvalSet(o.set);
    const items = set.items.slice(0, o.limit);
    if (items.length === 0) throw new UsageError(`--set ${o.set}: no usable items in ${set.file}`);
    const file = path.join(o.verifier, VERIFIER_FILE);
    const engine = await loadLocalEngine(o.model);
    const verifier = await loadLocalVerifier(o.verifier, engine).catch(async (error: unknown) => {
      await engine.close();
      throw error;
    });
    // swires' first pass alone, with no population: the one being measured.
    const settings = parseSearchSettings({
      strategy: "swires",
      beam: 1,
      seed: o.seed,
      judgeMode: "verifier",
      swires: { ...DEFAULT_SWIRES, maxRetraces: 0 },
    });
    const policy = engine.info.digest;
    const scores: number[] = [];
    const failures: string[] = [];
    const progress = createProgress({ label: "calibrate", unit: "items" });
    let nextIndex = 0;
    let done = 0;
    const worker = async () => {
      for (let i = nextIndex++; i < items.length; i = nextIndex++) {
        const item = items[i]!;
        const itemId = toItemId(item.id);
        try {
          const input = { id: itemId, image: await readFile(item.imagePath), question: item.question };
          const open = await openItemExecutor(engine, input, verifier);
          try {
            const result = await runSearch(paramsFor(itemId, settings), open);
            for (const step of result.steps) if (step.label === "REASONING") scores.push(...step.scores.map((s) => s.score));
          } finally {
            open.close();
          }
        } catch (error) {
          failures.push(`${item.id}: ${error instanceof Error ? error.message : String(error)}`);
        }
        progress.update(++done, items.length);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(o.concurrency, items.length) }, worker));
    } finally {
      progress.stop();
      await verifier.close();
      await engine.close();
    }
    for (const f of failures) process.stderr.write(`stagebeam verifier calibrate: item ${f}; skipped\n`);
    if (scores.length === 0) throw new Error(`--set ${o.set}: no item gave a reasoning score; nothing to calibrate`);
    const calibration = calibrationOf(scores, {
      items: items.length - failures.length,
      set: o.describe ?? o.set,
      seed: o.seed,
      policy,
    });
    console.log(
      `${calibration.scores} reasoning scores from ${calibration.items} items: mean ${calibration.mean}, sd ${calibration.sd}; swires cutoff mean + ${DEFAULT_SWIRES.retraceZ}·sd = ${(calibration.mean + DEFAULT_SWIRES.retraceZ * calibration.sd).toFixed(4)}`,
    );
    if (o.dryRun) return;
    // Rewrite the file as it was, the statistics added (or replaced), and check it still reads.
    const raw = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
    const updated = { ...raw, calibration };
    VerifierTemplateSchema.parse(updated);
    await writeFile(file, `${JSON.stringify(updated, null, 2)}\n`);
    console.log(`wrote the calibration into ${file}`);
  });

export const verifierCommand = new Command("verifier").description("process-verifier tools").addCommand(calibrate);
