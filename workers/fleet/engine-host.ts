/**
 * The adapter from workers/engine to the fleet's ModelHost: loads the model once per worker
 * process (a local folder, or an S3 prefix downloaded and checked against MODEL_DIGEST) and
 * maps each opened item onto an engine item context. Concurrent jobs call into the same
 * Engine, whose scheduler batches their decoder work together.
 */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Config } from "../../shared/io/config.ts";
import type { Logger } from "../../shared/io/logging.ts";
import type { StagebeamMetrics } from "../../shared/io/metrics.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { isPairwise } from "../../shared/core/search/settings.ts";
import { Engine } from "../engine/index.ts";
import type { ModelHost } from "./model-host.ts";

export type ModelHostConfig = Pick<Config, "model" | "engine" | "s3" | "worker">;

export interface ModelHostDeps {
  logger: Logger;
  metrics: StagebeamMetrics;
}

/** Copies every object under the model's S3 prefix into a local cache folder. */
async function downloadModel(config: ModelHostConfig, logger: Logger): Promise<string> {
  const model = config.model;
  if (model.source !== "s3") return model.dir;
  const store = S3Store.fromConfig({ ...config.s3, bucket: model.bucket });
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
  if (files === 0) throw new Error(`MODEL_URI ${model.uri}: no objects under that prefix; expected a model folder`);
  logger.info({ uri: model.uri, dir, files }, "model downloaded");
  return dir;
}

export async function createModelHost(config: ModelHostConfig, deps: ModelHostDeps): Promise<ModelHost> {
  const dir = await downloadModel(config, deps.logger);
  const engine = await Engine.load(dir, {
    executionProviders: config.engine.executionProviders,
    ...(config.engine.intraOpThreads !== undefined ? { intraOpThreads: config.engine.intraOpThreads } : {}),
    ...(config.model.digest !== undefined ? { expectedDigest: config.model.digest } : {}),
    ...(config.model.dtype !== undefined ? { dtype: config.model.dtype } : {}),
    logger: deps.logger,
    observer: { decodeStep: (rows) => deps.metrics.decodeBatchSize.observe(rows) },
  });
  deps.logger.info({ dir, digest: engine.info.digest, providers: engine.info.providers }, "model loaded");
  return {
    modelId: config.model.source === "s3" ? config.model.uri : path.basename(path.resolve(dir)),
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
