/**
 * The adapter from workers/engine to the fleet's ModelHost and VerifierHost: loads the model
 * and/or the verifier once per worker process (a local folder, or an S3 prefix kept in
 * MODEL_CACHE_DIR and checked against MODEL_DIGEST / VERIFIER_MODEL_DIGEST) and maps each opened item onto an
 * engine item context. Concurrent jobs call into the same Engine, whose scheduler batches their
 * decoder work together.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { BUNDLED_VERIFIER, type Config, type ModelConfig, type S3Config } from "../../../shared/io/config.ts";
import type { Logger } from "../../../shared/io/logging.ts";
import type { StagebeamMetrics } from "../../../shared/io/metrics.ts";
import { S3Store } from "../../../shared/io/storage/s3-store.ts";
import { Engine, ModelFolderError, openItemExecutor, openVerifierItem, Verifier } from "../../engine/index.ts";
import { cachedModelFolder, discardCachedModel } from "./model-cache.ts";
import type { ModelHost, VerifierHost } from "../protocol/index.ts";

export type ModelHostConfig = Pick<Config, "model" | "engine" | "s3" | "worker">;
export type HostsConfig = ModelHostConfig & Pick<Config, "verifier">;

export interface ModelHostDeps {
  logger: Logger;
  metrics: StagebeamMetrics;
}

type S3Model = Extract<ModelConfig, { source: "s3" }>;

/**
 * What `load` makes of the model's folder: a local folder as it is, or MODEL_URI's copy in
 * MODEL_CACHE_DIR. A reused copy that the load refuses (the digest does not match, a file no
 * longer parses) is downloaded once more; a fresh download that is refused is removed from the
 * cache and the start fails, naming the URI.
 */
async function loadFolder<T>(
  model: ModelConfig,
  uriVariable: "MODEL_URI" | "VERIFIER_MODEL_URI",
  s3: S3Config,
  deps: ModelHostDeps,
  load: (dir: string) => Promise<T>,
): Promise<{ loaded: T; dir: string }> {
  if (model.source !== "s3") return { loaded: await load(model.dir), dir: model.dir };
  return loadFromS3(model, uriVariable, s3, deps, load);
}

async function loadFromS3<T>(
  model: S3Model,
  uriVariable: string,
  s3: S3Config,
  deps: ModelHostDeps,
  load: (dir: string) => Promise<T>,
): Promise<{ loaded: T; dir: string }> {
  const store = S3Store.fromConfig({ ...s3, bucket: model.bucket }, { metrics: deps.metrics });
  try {
    let copy = await cachedModelFolder(model, store, deps.logger);
    for (;;) {
      try {
        return { loaded: await load(copy.dir), dir: copy.dir };
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
        throw new Error(`${uriVariable} ${model.uri}: the downloaded folder was refused: ${err.message}`, { cause: err });
      }
    }
  } finally {
    store.destroy();
  }
}

const modelIdOf = (model: ModelConfig, dir: string) => (model.source === "s3" ? model.uri : path.basename(path.resolve(dir)));

function sessionOptions(config: Pick<Config, "engine">, deps: ModelHostDeps) {
  return {
    executionProviders: config.engine.executionProviders,
    ...(config.engine.intraOpThreads !== undefined ? { intraOpThreads: config.engine.intraOpThreads } : {}),
    ...(config.engine.kvBudgetBytes !== undefined ? { kvBudgetBytes: config.engine.kvBudgetBytes } : {}),
    logger: deps.logger,
    observer: { decodeStep: (rows: number) => deps.metrics.decodeBatchSize.observe(rows) },
  };
}

async function loadPolicy(config: ModelHostConfig, deps: ModelHostDeps): Promise<{ engine: Engine; modelId: string }> {
  const { loaded: engine, dir } = await loadFolder(config.model, "MODEL_URI", config.s3, deps, (folder) =>
    Engine.load(folder, {
      ...sessionOptions(config, deps),
      ...(config.model.digest !== undefined ? { expectedDigest: config.model.digest } : {}),
      ...(config.model.dtype !== undefined ? { dtype: config.model.dtype } : {}),
    }),
  );
  deps.logger.info(
    { dir, digest: engine.info.digest, providers: engine.info.providers, runtime: engine.runtime.summary },
    "model loaded",
  );
  return { engine, modelId: modelIdOf(config.model, dir) };
}

function policyHost(engine: Engine, modelId: string): ModelHost {
  return {
    modelId,
    digest: engine.info.digest,
    runtime: engine.runtime,
    open: (item) => openItemExecutor(engine, item),
    close: () => engine.close(),
  };
}

export async function createModelHost(config: ModelHostConfig, deps: ModelHostDeps): Promise<ModelHost> {
  const { engine, modelId } = await loadPolicy(config, deps);
  return policyHost(engine, modelId);
}

/**
 * The verifier host of VERIFIER_MODEL_DIR / VERIFIER_MODEL_URI (else the bundled verifier). A
 * verifier folder that is the policy's own shares the policy's engine.
 */
export async function createVerifierHost(
  config: Pick<HostsConfig, "verifier" | "engine" | "s3">,
  deps: ModelHostDeps,
  policy: Engine | null = null,
): Promise<VerifierHost> {
  const { model, configured } = config.verifier;
  if (!configured && model.source === "dir" && !existsSync(model.dir)) {
    throw new Error(
      `WORKER_MODELS holds the verifier, but there is none: set VERIFIER_MODEL_DIR or VERIFIER_MODEL_URI (the bundled ${BUNDLED_VERIFIER} is not there)`,
    );
  }
  const { loaded: verifier, dir } = await loadFolder(model, "VERIFIER_MODEL_URI", config.s3, deps, (folder) =>
    policy !== null && path.resolve(folder) === path.resolve(policy.folder.dir)
      ? Verifier.over(policy)
      : Verifier.load(folder, {
          ...sessionOptions(config, deps),
          ...(model.digest !== undefined ? { expectedDigest: model.digest } : {}),
        }),
  );
  deps.logger.info({ dir, digest: verifier.digest, runtime: verifier.engine.runtime.summary }, "verifier loaded");
  return {
    modelId: modelIdOf(model, dir),
    digest: verifier.digest,
    runtime: verifier.engine.runtime,
    open: (item) => openVerifierItem(verifier, { id: item.id, image: item.image, question: item.question }),
    close: () => verifier.close(),
  };
}

/** What WORKER_MODELS says this worker holds: the policy, the verifier, or both (sharing one engine when they are one folder). */
export async function createHosts(
  config: HostsConfig,
  deps: ModelHostDeps,
): Promise<{ host: ModelHost | null; verifier: VerifierHost | null }> {
  const models = config.verifier.workerModels;
  const policy = models.includes("policy") ? await loadPolicy(config, deps) : null;
  try {
    const verifier = models.includes("verifier") ? await createVerifierHost(config, deps, policy?.engine ?? null) : null;
    return { host: policy === null ? null : policyHost(policy.engine, policy.modelId), verifier };
  } catch (err) {
    await policy?.engine.close();
    throw err;
  }
}
