/**
 * The local copy of a MODEL_URI model folder in MODEL_CACHE_DIR. Every object under the prefix
 * is streamed to disk, several at once, into a temporary folder that is renamed into place only
 * when every file is complete, together with a record of what was downloaded (keys, sizes,
 * ETags). A later start reuses the folder without downloading when that record matches the
 * prefix's listing and every file still has its size; so a partial download never counts, and a
 * model replaced under the same prefix is fetched again. Whether the bytes are the model asked
 * for is MODEL_DIGEST's check, which the engine makes when it loads the folder
 * (`engine-host.ts` fetches a reused folder again when that check fails).
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import pLimit from "p-limit";
import { z } from "zod";
import type { Logger } from "../../../shared/io/logging.ts";
import type { S3Store } from "../../../shared/io/storage/s3-store.ts";

export interface ModelLocation {
  uri: string;
  bucket: string;
  /** The folder's key prefix, ending in `/` (or empty for the whole bucket). */
  prefix: string;
  cacheDir: string;
}

export interface CachedModel {
  dir: string;
  /** False when a complete earlier download was reused. */
  downloaded: boolean;
  files: number;
  bytes: number;
}

/** Objects fetched at once: enough to fill a link from a handful of large weight files. */
const PARALLEL_DOWNLOADS = 8;

/** Inside the folder, so the rename that completes a download also completes its record. */
export const DOWNLOAD_RECORD = ".stagebeam-download.json";

const downloadRecord = z.object({
  uri: z.string(),
  objects: z.array(z.object({ file: z.string(), size: z.number().int().min(0), etag: z.string().nullable() })),
});
type DownloadRecord = z.infer<typeof downloadRecord>;
type ListedFile = DownloadRecord["objects"][number];

/** The folder a URI is kept in: a hash, so any bucket and prefix make one safe name. */
export function cacheFolderOf(location: ModelLocation): string {
  return path.join(location.cacheDir, createHash("sha256").update(location.uri).digest("hex").slice(0, 16));
}

async function listFolder(location: ModelLocation, store: S3Store): Promise<ListedFile[]> {
  const files: ListedFile[] = [];
  for await (const object of store.list(location.prefix)) {
    const file = object.key.slice(location.prefix.length);
    if (file === "" || file.endsWith("/")) continue;
    const normal = path.posix.normalize(file);
    if (normal !== file || file.startsWith("/") || normal.startsWith("../") || file === DOWNLOAD_RECORD) {
      throw new Error(
        `MODEL_URI ${location.uri}: object key ${JSON.stringify(object.key)} does not name a file inside the folder`,
      );
    }
    files.push({ file, size: object.size, etag: object.etag ?? null });
  }
  if (files.length === 0) throw new Error(`MODEL_URI ${location.uri}: no objects under that prefix; expected a model folder`);
  return files;
}

/** Why the folder cannot be reused (for the log), or null when it can. */
async function staleness(dir: string, location: ModelLocation, listed: readonly ListedFile[]): Promise<string | null> {
  let record: DownloadRecord;
  try {
    record = downloadRecord.parse(JSON.parse(await readFile(path.join(dir, DOWNLOAD_RECORD), "utf8")));
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT" ? "not downloaded yet" : `unreadable ${DOWNLOAD_RECORD}`;
  }
  if (record.uri !== location.uri || JSON.stringify(record.objects) !== JSON.stringify(listed)) {
    return "the objects under the prefix changed since the download";
  }
  for (const f of listed) {
    const size = await stat(path.join(dir, f.file)).then(
      (s) => s.size,
      () => -1,
    );
    if (size !== f.size) return `${f.file} is ${size < 0 ? "missing" : `${size} bytes, expected ${f.size}`}`;
  }
  return null;
}

async function download(location: ModelLocation, store: S3Store, listed: readonly ListedFile[], final: string): Promise<void> {
  const temp = path.join(location.cacheDir, `.${path.basename(final)}.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
  const limit = pLimit(PARALLEL_DOWNLOADS);
  try {
    await Promise.all(
      listed.map((f) =>
        limit(async () => {
          const target = path.join(temp, f.file);
          await mkdir(path.dirname(target), { recursive: true });
          const bytes = await store.downloadTo(location.prefix + f.file, target);
          if (bytes !== f.size) {
            throw new Error(`MODEL_URI ${location.uri}: ${f.file} came with ${bytes} bytes, listed as ${f.size}`);
          }
        }),
      ),
    );
    const record: DownloadRecord = { uri: location.uri, objects: [...listed] };
    await writeFile(path.join(temp, DOWNLOAD_RECORD), `${JSON.stringify(record, null, 2)}\n`);
    await replaceFolder(temp, final);
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/** Puts the complete `temp` folder at `final`, moving an older copy out of the way first. */
async function replaceFolder(temp: string, final: string): Promise<void> {
  const old = `${temp}.old`;
  await rename(final, old).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
  try {
    await rename(temp, final);
  } catch (err) {
    // Another worker sharing the cache put its complete copy there in between: use that one.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
  }
  await rm(old, { recursive: true, force: true });
}

/**
 * The local folder for `location`: the earlier download when it is complete and current, else
 * a fresh one (`refresh` forces it, for a reused folder that failed the engine's check).
 */
export async function cachedModelFolder(
  location: ModelLocation,
  store: S3Store,
  logger: Logger,
  { refresh = false }: { refresh?: boolean } = {},
): Promise<CachedModel> {
  const listed = await listFolder(location, store);
  const dir = cacheFolderOf(location);
  const bytes = listed.reduce((n, f) => n + f.size, 0);
  const why = refresh ? "asked to download again" : await staleness(dir, location, listed);
  if (why === null) {
    logger.info({ uri: location.uri, dir, files: listed.length, bytes }, "model folder reused from the cache");
    return { dir, downloaded: false, files: listed.length, bytes };
  }
  await mkdir(location.cacheDir, { recursive: true });
  logger.info({ uri: location.uri, dir, files: listed.length, bytes, why }, "downloading the model folder");
  const t0 = performance.now();
  await download(location, store, listed, dir);
  logger.info({ uri: location.uri, dir, seconds: (performance.now() - t0) / 1000 }, "model folder downloaded");
  return { dir, downloaded: true, files: listed.length, bytes };
}

/** Removes a cached folder the engine refused, so that no later start trusts it. */
export async function discardCachedModel(model: CachedModel): Promise<void> {
  await rm(model.dir, { recursive: true, force: true });
}
