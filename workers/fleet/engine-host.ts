/**
 * The adapter from workers/engine to the fleet's ModelHost and VerifierHost: loads the model
 * and/or the verifier once per worker process (a local folder, or an S3 prefix downloaded and
 * checked against MODEL_DIGEST / VERIFIER_MODEL_DIGEST) and maps each opened item onto an
 * engine item context. Concurrent jobs call into the same Engine, whose scheduler batches their
 * decoder work together.
 */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { existsSync } from "node:fs";
import { BUNDLED_VERIFIER, type Config, type ModelConfig } from "../../shared/io/config.ts";
import type { Logger } from "../../shared/io/logging.ts";
import type { StagebeamMetrics } from "../../shared/io/metrics.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { isPairwise } from "../../shared/core/search/settings.ts";
import { Engine, Verifier } from "../engine/index.ts";
import type { ModelHost, VerifierHost } from "./model-host.ts";

export type ModelHostConfig = Pick<Config, "model" | "engine" | "s3" | "worker">;
export type HostsConfig = ModelHostConfig & Pick<Config, "verifier">;

export interface ModelHostDeps {
  logger: Logger;
  metrics: StagebeamMetrics;
}

/** Copies every object under the model's S3 prefix into a local cache folder (a local folder is used as it is). */
async function downloadModel(model: ModelConfig, s3: Config["s3"], logger: Logger): Promise<string> {
  if (model.source !== "s3") return model.dir;
  const store = S3Store.fromConfig({ ...s3, bucket: model.bucket });
  const prefix = model.prefix.endsWith("/") ? model.prefix : `${model.prefix}/`;
  const dir = path.join(tmpdir(), "stagebeam-models", createHash("sha256").update(model.uri).digest("hex").slice(0, 16));
  let files = 0;
  for await (const object of store.list(prefix)) {
    const relative = object.key.slice(prefix.length);
    if (relative === "" || relative.endsWith("/")) continue;
    const bytes = await store.getBytes(object.key);
    if (!bytes) throw new Error(`${model.uri}: ${object.key} vanished while downloading the model`);
    const target = path.join(dir, relative);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, bytes);
    files++;
  }
  store.destroy();
  if (files === 0) throw new Error(`${model.uri}: no objects under that prefix; expected a model folder`);
  logger.info({ uri: model.uri, dir, files }, "model downloaded");
  return dir;
}

const modelIdOf = (model: ModelConfig, dir: string) => (model.source === "s3" ? model.uri : path.basename(path.resolve(dir)));

function sessionOptions(config: Pick<Config, "engine">, deps: ModelHostDeps) {
  return {
    executionProviders: config.engine.executionProviders,
    ...(config.engine.intraOpThreads !== undefined ? { intraOpThreads: config.engine.intraOpThreads } : {}),
    logger: deps.logger,
    observer: { decodeStep: (rows: number) => deps.metrics.decodeBatchSize.observe(rows) },
  };
}

async function loadPolicy(config: ModelHostConfig, deps: ModelHostDeps): Promise<{ engine: Engine; modelId: string }> {
  const dir = await downloadModel(config.model, config.s3, deps.logger);
  const engine = await Engine.load(dir, {
    ...sessionOptions(config, deps),
    ...(config.model.digest !== undefined ? { expectedDigest: config.model.digest } : {}),
    ...(config.model.dtype !== undefined ? { dtype: config.model.dtype } : {}),
  });
  deps.logger.info({ dir, digest: engine.info.digest, providers: engine.info.providers }, "model loaded");
  return { engine, modelId: modelIdOf(config.model, dir) };
}

function policyHost(engine: Engine, modelId: string): ModelHost {
  return {
    modelId,
    digest: engine.info.digest,
    async open(item, { judgeMode }) {
      const ctx = await engine.openItem({ id: item.id, image: item.image, question: item.question });
      return {
        generate: (requests) => engine.generate(ctx, requests),
        judge: (requests) => engine.judge(ctx, requests, isPairwise(judgeMode) ? judgeMode : undefined),
        close: () => engine.closeItem(ctx),
      };
    },
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
  const dir = await downloadModel(model, config.s3, deps.logger);
  const verifier =
    policy !== null && path.resolve(dir) === path.resolve(policy.folder.dir)
      ? await Verifier.over(policy)
      : await Verifier.load(dir, {
          ...sessionOptions(config, deps),
          ...(model.digest !== undefined ? { expectedDigest: model.digest } : {}),
        });
  deps.logger.info({ dir, digest: verifier.digest }, "verifier loaded");
  return {
    modelId: modelIdOf(model, dir),
    digest: verifier.digest,
    async open(item) {
      const ctx = await verifier.openItem({ id: item.id, image: item.image, question: item.question });
      return {
        verify: (requests) => verifier.verify(ctx, requests),
        close: () => verifier.closeItem(ctx),
      };
    },
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
