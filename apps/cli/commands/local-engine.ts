/** What `ask`, `eval` and the benchmarks share: search options and an engine on this machine. */
import { Command, Option } from "commander";
import { loadConfig } from "../../../shared/config.ts";
import { createLogger } from "../../../shared/logging.ts";
import { STRATEGIES } from "../../../shared/search/types.ts";
import { Engine, type EngineOptions } from "../../../workers/engine/index.ts";
import { JUDGE_MODES } from "../../../workers/fleet/model-host.ts";
import { validateSettings } from "../../../workers/fleet/producer.ts";
import type { RunSettings } from "../../../workers/fleet/records.ts";
import { intOption } from "./common.ts";

export interface SearchCliOptions {
  strategy: string;
  beam: number;
  judge: string;
  seed: number;
  model?: string;
}

/** The search flags, the same on `ask`, `eval` and `submit`. */
export function addSearchOptions(command: Command): Command {
  return command
    .addOption(new Option("--strategy <name>", `search strategy: ${STRATEGIES.join(", ")}`).default("stage"))
    .option("--beam <n>", "candidates per step (best-of-N: N)", intOption("--beam", -1_000_000), 4)
    .addOption(new Option("--judge <mode>", `judge mode: ${JUDGE_MODES.join(", ")}`).default("score"))
    .option("--seed <n>", "seed; the same seed gives the same answer", intOption("--seed", -1_000_000), 1)
    .option("--model <dir>", "model folder (default: MODEL_DIR, else the bundled model)");
}

export const searchSettings = (o: SearchCliOptions): RunSettings =>
  validateSettings({ strategy: o.strategy, beam: o.beam, seed: o.seed, judgeMode: o.judge });

/** Loads the engine from --model, MODEL_DIR or the bundled model, with EXECUTION_PROVIDERS etc. */
export async function loadLocalEngine(modelFlag: string | undefined, extra: EngineOptions = {}): Promise<Engine> {
  const env = modelFlag ? { ...process.env, MODEL_DIR: modelFlag, MODEL_URI: undefined } : process.env;
  const config = loadConfig(env, ["model", "engine", "logging"]);
  if (config.model.source !== "dir") throw new Error("MODEL_URI is for fleet workers; use --model or MODEL_DIR with ask and eval");
  const logger = createLogger({ name: "engine", level: config.logging.level });
  return Engine.load(config.model.dir, {
    executionProviders: config.engine.executionProviders,
    ...(config.engine.intraOpThreads !== undefined ? { intraOpThreads: config.engine.intraOpThreads } : {}),
    logger,
    ...extra,
  });
}
