/**
 * The adapter from workers/engine to the fleet's ModelHost: loads the model once per worker
 * process (a local folder, or an S3 prefix kept in MODEL_CACHE_DIR and checked against MODEL_DIGEST) and
 * maps each opened item onto an engine item context. Concurrent jobs call into the same
 * Engine, whose scheduler batches their decoder work together.
 */
import path from "node:path";
import type { Config, ModelConfig, S3Config } from "../../shared/io/config.ts";
import type { Logger } from "../../shared/io/logging.ts";
import type { StagebeamMetrics } from "../../shared/io/metrics.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { Engine, ModelFolderError } from "../engine/index.ts";
import { cachedModelFolder, discardCachedModel } from "./model-cache.ts";
import type { ModelHost } from "./model-host.ts";

export type ModelHostConfig = Pick<Config, "model" | "engine" | "s3" | "worker">;

export interface ModelHostDeps {
  logger: Logger;
  metrics: StagebeamMetrics;
}

type EngineLoad = (dir: string) => Promise<Engine>;
type S3Model = Extract<ModelConfig, { source: "s3" }>;

/**
 * The engine over MODEL_URI's cached copy. A reused copy that the engine refuses (MODEL_DIGEST
 * does not match, a file no longer parses) is downloaded once more; a fresh download that is
 * refused is removed from the cache and the start fails, naming the URI.
 */
async function loadFromS3(model: S3Model, s3: S3Config, deps: ModelHostDeps, load: EngineLoad): Promise<Engine> {
  const store = S3Store.fromConfig({ ...s3, bucket: model.bucket }, { metrics: deps.metrics });
  try {
    let copy = await cachedModelFolder(model, store, deps.logger);
    for (;;) {
      try {
        return await load(copy.dir);
      } catch (err) {
        if (!(err instanceof ModelFolderError)) throw err;
        if (!copy.downloaded) {
          deps.logger.warn(
            { uri: model.uri, dir: copy.dir, err: err.message },
            "cached model folder refused; downloading it again",
          );
          copy = await cachedModelFolder(model, store, deps.logger, { refresh: true });
          continue;
        }
        await discardCachedModel(copy);
        throw new Error(`MODEL_URI ${model.uri}: the downloaded folder was refused: ${err.message}`, { cause: err });
      }
    }
  } finally {
    store.destroy();
  }
}

export async function createModelHost(config: ModelHostConfig, deps: ModelHostDeps): Promise<ModelHost> {
  const load: EngineLoad = (dir) =>
    Engine.load(dir, {
      executionProviders: config.engine.executionProviders,
      ...(config.engine.intraOpThreads !== undefined ? { intraOpThreads: config.engine.intraOpThreads } : {}),
      ...(config.model.digest !== undefined ? { expectedDigest: config.model.digest } : {}),
      ...(config.model.dtype !== undefined ? { dtype: config.model.dtype } : {}),
      logger: deps.logger,
      observer: { decodeStep: (rows) => deps.metrics.decodeBatchSize.observe(rows) },
    });
  const engine =
    config.model.source === "s3" ? await loadFromS3(config.model, config.s3, deps, load) : await load(config.model.dir);
  const dir = engine.info.dir;
  deps.logger.info({ dir, digest: engine.info.digest, providers: engine.info.providers }, "model loaded");
  return {
    modelId: config.model.source === "s3" ? config.model.uri : path.basename(path.resolve(dir)),
    digest: engine.info.digest,
    async open(item, { judgeMode }) {
      const ctx = await engine.openItem({ id: item.id, image: item.image, question: item.question });
      return {
        generate: (requests) => engine.generate(ctx, requests),
        judge: (requests) => engine.judge(ctx, requests, judgeMode),
        close: () => engine.closeItem(ctx),
      };
    },
    close: () => engine.close(),
  };
}
