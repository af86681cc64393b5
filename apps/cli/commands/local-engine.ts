/** What `ask`, `eval` and the benchmarks share: an engine on this machine. */
import type { Command } from "commander";
import { loadConfig } from "../../../shared/io/config.ts";
import { createLogger } from "../../../shared/io/logging.ts";
import { Engine, type EngineOptions } from "../../../workers/engine/index.ts";
import { addSearchOptions, type SearchCliOptions } from "./search-options.ts";

export interface LocalEngineCliOptions extends SearchCliOptions {
  model?: string;
}

/** The search flags plus --model, for the commands that run an engine in this process. */
export const addLocalEngineOptions = (command: Command): Command =>
  addSearchOptions(command).option("--model <dir>", "model folder (default: MODEL_DIR, else the bundled model)");

/** Loads the engine from --model, MODEL_DIR or the bundled model, with EXECUTION_PROVIDERS etc. */
export async function loadLocalEngine(modelFlag: string | undefined, extra: EngineOptions = {}): Promise<Engine> {
  const env = modelFlag ? { ...process.env, MODEL_DIR: modelFlag, MODEL_URI: undefined } : process.env;
  const config = loadConfig(env, ["model", "engine", "logging"]);
  if (config.model.source !== "dir")
    throw new Error("MODEL_URI is for fleet workers; use --model or MODEL_DIR with ask and eval");
  // A person reads ask/eval output: the model-loaded line is noise there unless LOG_LEVEL asks for it.
  const logger = createLogger({ name: "engine", level: config.logging.requested ? config.logging.level : "warn" });
  return Engine.load(config.model.dir, {
    executionProviders: config.engine.executionProviders,
    ...(config.engine.intraOpThreads !== undefined ? { intraOpThreads: config.engine.intraOpThreads } : {}),
    ...(config.model.dtype !== undefined ? { dtype: config.model.dtype } : {}),
    logger,
    ...extra,
  });
}
