/**
 * MODEL_URI against the embedded S3: the bundled model uploaded to s3rver, downloaded by the
 * worker's model host into MODEL_CACHE_DIR, reused by the next start without a GET, fetched
 * again when the cached copy is damaged, and refused (and dropped from the cache) when what S3
 * holds does not match MODEL_DIGEST. GETs are counted by the store's own request histogram.
 */
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startS3Server, type S3Server } from "../../apps/demo/services/s3-server.ts";
import { BUNDLED_MODEL_DIR, loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { loadModelFolder } from "../../workers/engine/index.ts";
import { createModelHost } from "../../workers/fleet/worker/index.ts";
import { cacheFolderOf, DOWNLOAD_RECORD } from "../../workers/fleet/worker/model-cache.ts";

const logger = createLogger({ level: process.env.DEBUG_TEST ? "debug" : "silent" });
const PREFIX = "models/stagebeam-tiny/";

let s3: S3Server;
let store: S3Store;
let cacheDir: string;
let files: string[];
let digest: string;

beforeAll(async () => {
  s3 = await startS3Server();
  store = S3Store.fromConfig(s3.config);
  cacheDir = await mkdtemp(join(tmpdir(), "sb-model-cache-"));
  const entries = await readdir(BUNDLED_MODEL_DIR, { recursive: true, withFileTypes: true });
  files = entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(BUNDLED_MODEL_DIR.length).replace(/^\//, ""))
    .sort();
  for (const f of files) await store.putBytesAt(PREFIX + f, await readFile(join(BUNDLED_MODEL_DIR, f)));
  digest = (await loadModelFolder(BUNDLED_MODEL_DIR)).digest;
});

afterAll(async () => {
  store?.destroy();
  await s3?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

function configFor(extra: Record<string, string> = {}) {
  return loadConfig({ ...s3.env, MODEL_URI: `s3://${s3.bucket}/${PREFIX}`, MODEL_CACHE_DIR: cacheDir, ...extra }, [
    "model",
    "engine",
    "s3",
    "worker",
  ]);
}

/** Starts a model host as a worker does; returns its digest and how many GetObject requests it made. */
async function start(extra: Record<string, string> = {}): Promise<{ digest: string; gets: number }> {
  const metrics = createMetrics({ defaultMetrics: false });
  const host = await createModelHost(configFor(extra), { logger, metrics });
  await host.close?.();
  const count = (await metrics.s3RequestSeconds.get()).values.find(
    (v) => v.metricName === "stagebeam_s3_request_seconds_count" && v.labels.op === "GetObject",
  );
  return { digest: host.digest, gets: count?.value ?? 0 };
}

const cached = () => {
  const config = configFor().model;
  if (config.source !== "s3") throw new Error("expected an S3 model");
  return cacheFolderOf(config);
};

describe("MODEL_URI downloads into MODEL_CACHE_DIR", () => {
  it("downloads every object once, reuses the complete copy on the next start, and leaves no partial folder", async () => {
    const first = await start({ MODEL_DIGEST: digest });
    expect(first).toEqual({ digest, gets: files.length });
    for (const f of files) {
      expect((await readFile(join(cached(), f))).equals(await readFile(join(BUNDLED_MODEL_DIR, f))), f).toBe(true);
    }
    expect((await readdir(cacheDir)).filter((n) => n.includes(".partial-"))).toEqual([]);
    const decoder = join(cached(), "decoder_model_merged.onnx");
    const mtime = (await stat(decoder)).mtimeMs;

    const second = await start({ MODEL_DIGEST: digest });
    expect(second).toEqual({ digest, gets: 0 });
    expect((await stat(decoder)).mtimeMs).toBe(mtime);
  });

  it("fetches a cached copy again when MODEL_DIGEST finds a file changed in place", async () => {
    const config = join(cached(), "config.json");
    const original = await readFile(config);
    // Same size, other bytes: only the digest can tell.
    await writeFile(config, original.toString("utf8").replace('"image_seq_length": 64', '"image_seq_length": 65'));
    expect((await readFile(config)).length).toBe(original.length);
    expect(await readFile(config)).not.toEqual(original);

    expect(await start({ MODEL_DIGEST: digest })).toEqual({ digest, gets: files.length });
    expect(await readFile(config)).toEqual(original);
  });

  it("fetches again when a cached file lost bytes or the download never completed, without MODEL_DIGEST too", async () => {
    await truncate(join(cached(), "vision_encoder.onnx"), 1000);
    expect(await start()).toEqual({ digest, gets: files.length });
    // A folder without its download record (a copy that was never completed) does not count.
    await rm(join(cached(), DOWNLOAD_RECORD));
    expect(await start()).toEqual({ digest, gets: files.length });
    expect(await start()).toEqual({ digest, gets: 0 });
  });

  it("refuses a model in S3 that does not match MODEL_DIGEST, naming the URI, and keeps no copy of it", async () => {
    const judge = `${PREFIX}judge_templates.json`;
    const original = await readFile(join(BUNDLED_MODEL_DIR, "judge_templates.json"));
    await store.putBytesAt(judge, Buffer.from(original.toString("utf8").replace("I choose", "I pick")));
    try {
      await expect(start({ MODEL_DIGEST: digest })).rejects.toThrow(
        new RegExp(
          `^MODEL_URI s3://${s3.bucket}/${PREFIX}: the downloaded folder was refused: .*digest sha256:[0-9a-f]{64} does not match the expected ${digest}`,
        ),
      );
      await expect(stat(cached())).rejects.toThrow(/ENOENT/);
    } finally {
      await store.putBytesAt(judge, original);
    }
    expect(await start({ MODEL_DIGEST: digest })).toEqual({ digest, gets: files.length });
  });

  it("fetches again when an object under the prefix changed since the download", async () => {
    expect(await start()).toEqual({ digest, gets: 0 });
    const card = `${PREFIX}README.md`;
    await store.putBytesAt(card, Buffer.from("a new model card\n"));
    // README.md is not a file the engine loads: the digest stays, the copy is still refreshed.
    expect(await start({ MODEL_DIGEST: digest })).toEqual({ digest, gets: files.length });
    expect(await readFile(join(cached(), "README.md"), "utf8")).toBe("a new model card\n");
    expect(await start()).toEqual({ digest, gets: 0 });
  });

  it("names an empty prefix", async () => {
    await expect(start({ MODEL_URI: `s3://${s3.bucket}/nothing/here/` })).rejects.toThrow(
      `MODEL_URI s3://${s3.bucket}/nothing/here/: no objects under that prefix; expected a model folder`,
    );
  });
});
