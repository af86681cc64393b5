/**
 * The adapter from workers/engine to the fleet's ModelHost. To be written when the engine's
 * public API is final: load the model folder (MODEL_DIR, or download MODEL_URI and check
 * MODEL_DIGEST), and map each opened item onto an engine item context whose generate/judge
 * calls batch across concurrent jobs. Map the engine's input errors to BadInputError (or
 * leave them named ItemInputError / EngineRequestError; the worker recognises those names).
 *
 * `stagebeam worker` calls this once per process and times it into
 * stagebeam_model_load_seconds. `deps.metrics` is there for the engine's own series: observe
 * stagebeam_decode_batch_size per real decoder call and set `observesBatchSize: true` on the
 * host (otherwise the worker observes the size of the batches it hands to the host).
 */
import type { Config } from "../../shared/config.ts";
import type { Logger } from "../../shared/logging.ts";
import type { StagebeamMetrics } from "../../shared/metrics.ts";
import type { ModelHost } from "./model-host.ts";

export type ModelHostConfig = Pick<Config, "model" | "engine" | "s3" | "worker">;

export interface ModelHostDeps {
  logger: Logger;
  metrics: StagebeamMetrics;
}

export async function createModelHost(config: ModelHostConfig, deps: ModelHostDeps): Promise<ModelHost> {
  void config;
  void deps;
  throw new Error("engine not wired yet: workers/fleet/engine-host.ts must adapt workers/engine to ModelHost");
}
