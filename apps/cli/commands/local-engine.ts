/** What `ask`, `eval` and the benchmarks share: an engine on this machine, and a verifier when the run needs one. */
import { existsSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { BUNDLED_MODEL_DIR, BUNDLED_VERIFIER, loadConfig } from "../../../shared/io/config.ts";
import { createLogger } from "../../../shared/io/logging.ts";
import { UsageError } from "../../../shared/core/usage-error.ts";
import type { SearchExecutor } from "../../../shared/core/search/drive.ts";
import { isPairwise, type JudgeMode } from "../../../shared/core/search/settings.ts";
import {
  Engine,
  Verifier,
  type EngineCounters,
  type EngineOptions,
  type ItemContext,
  type OpenItemInput,
} from "../../../workers/engine/index.ts";
import { addSearchOptions, type SearchCliOptions } from "./search-options.ts";

export interface LocalEngineCliOptions extends SearchCliOptions {
  model?: string;
  verifier?: string;
}

/** The search flags plus --model and --verifier, for the commands that run an engine in this process. */
export const addLocalEngineOptions = (command: Command): Command =>
  addSearchOptions(command)
    .option("--model <dir>", "model folder (default: MODEL_DIR, else the bundled model)")
    .option(
      "--verifier <dir>",
      `process-verifier folder for --judge verifier and swires (default: VERIFIER_MODEL_DIR, else the bundled ${BUNDLED_VERIFIER})`,
    );

function localConfig(modelFlag: string | undefined, verifierFlag: string | undefined) {
  const env = {
    ...process.env,
    ...(modelFlag ? { MODEL_DIR: modelFlag, MODEL_URI: undefined } : {}),
    ...(verifierFlag ? { VERIFIER_MODEL_DIR: verifierFlag, VERIFIER_MODEL_URI: undefined } : {}),
  };
  return loadConfig(env, ["model", "verifier", "engine", "logging"]);
}

/** Session and logging options of a local engine, from EXECUTION_PROVIDERS, ORT_INTRA_OP_THREADS and LOG_LEVEL. */
function engineOptions(config: ReturnType<typeof localConfig>): EngineOptions {
  // A person reads ask/eval output: the model-loaded line is noise there unless LOG_LEVEL asks for it.
  const logger = createLogger({ name: "engine", level: config.logging.requested ? config.logging.level : "warn" });
  return {
    executionProviders: config.engine.executionProviders,
    ...(config.engine.intraOpThreads !== undefined ? { intraOpThreads: config.engine.intraOpThreads } : {}),
    logger,
  };
}

/** Loads the engine from --model, MODEL_DIR or the bundled model, with EXECUTION_PROVIDERS etc. */
export async function loadLocalEngine(modelFlag: string | undefined, extra: EngineOptions = {}): Promise<Engine> {
  const config = localConfig(modelFlag, undefined);
  if (config.model.source !== "dir")
    throw new Error("MODEL_URI is for fleet workers; use --model or MODEL_DIR with ask and eval");
  return Engine.load(config.model.dir, {
    ...engineOptions(config),
    ...(config.model.dtype !== undefined ? { dtype: config.model.dtype } : {}),
    ...extra,
  });
}

/**
 * Said once on stderr when the engine is the bundled model: it was trained on the synthetic
 * scenes alone, so any other picture gets a confident guess in the scenes' vocabulary.
 */
export function noteBundledModel(engine: Engine, command: string): void {
  if (path.resolve(engine.folder.dir) !== path.resolve(BUNDLED_MODEL_DIR)) return;
  process.stderr.write(
    `stagebeam ${command}: note: the bundled model knows only its synthetic scenes (coloured shapes: counts, colours, ` +
      "shapes, comparisons; `stagebeam scenes`); it answers other pictures with guesses. Pass --model DIR or set MODEL_DIR for a real model.\n",
  );
}

/** The verifier folder this machine would use, or null when none is set and the bundled one is not there. */
export function localVerifierDir(verifierFlag: string | undefined): string | null {
  const config = localConfig(undefined, verifierFlag);
  if (config.verifier.model.source !== "dir")
    throw new UsageError("VERIFIER_MODEL_URI is for fleet workers; use --verifier or VERIFIER_MODEL_DIR with ask and eval");
  const { dir } = config.verifier.model;
  return config.verifier.configured || existsSync(dir) ? dir : null;
}

/**
 * Loads the verifier from --verifier, VERIFIER_MODEL_DIR or the bundled one. A verifier folder
 * that is the policy's own folder shares the policy's engine (the policy as its own verifier).
 */
export async function loadLocalVerifier(verifierFlag: string | undefined, policy: Engine): Promise<Verifier> {
  const dir = localVerifierDir(verifierFlag);
  if (dir === null) {
    throw new UsageError(
      `--judge verifier and swires need a process verifier: pass --verifier DIR or set VERIFIER_MODEL_DIR (the bundled ${BUNDLED_VERIFIER} is not there)`,
    );
  }
  if (path.resolve(dir) === path.resolve(policy.folder.dir)) return Verifier.over(policy);
  const config = localConfig(undefined, verifierFlag);
  return Verifier.load(dir, {
    ...engineOptions(config),
    ...(config.verifier.model.digest !== undefined ? { expectedDigest: config.verifier.model.digest } : {}),
  });
}

/** One item opened on this machine: the policy's context, the verifier's when there is one, and the search executor over both. */
export interface LocalItem {
  executor: SearchExecutor;
  close(): void;
}

export async function openLocalItem(
  engine: Engine,
  verifier: Verifier | null,
  input: OpenItemInput,
  judgeMode: JudgeMode,
): Promise<LocalItem> {
  const ctx = await engine.openItem(input);
  let vctx: ItemContext | null = null;
  try {
    vctx = verifier === null ? null : await verifier.openItem(input);
  } catch (err) {
    engine.closeItem(ctx);
    throw err;
  }
  const executor: SearchExecutor = {
    generate: (requests) => engine.generate(ctx, requests),
    // Under judge mode verifier no search asks the pairwise judge; the engine's default would answer if one did.
    judge: (requests) => engine.judge(ctx, requests, isPairwise(judgeMode) ? judgeMode : undefined),
    ...(verifier !== null && vctx !== null ? { verify: (requests) => verifier.verify(vctx, requests) } : {}),
  };
  return {
    executor,
    close: () => {
      engine.closeItem(ctx);
      if (vctx !== null) verifier!.closeItem(vctx);
    },
  };
}

/** The work counters of the policy and of a verifier with an engine of its own, added up. */
export function sumCounters(engine: Engine, verifier: Verifier | null): EngineCounters {
  const own = engine.counters();
  if (verifier === null || verifier.engine === engine) return own;
  const other = verifier.engine.counters();
  const sum = { ...own };
  for (const key of Object.keys(sum) as (keyof EngineCounters)[]) {
    sum[key] = key === "maxDecodeBatch" ? Math.max(own[key], other[key]) : own[key] + other[key];
  }
  return sum;
}
