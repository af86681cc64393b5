/**
 * The S3 key layout; run and item ids follow the id policy of shared/core/ids.ts.
 *
 *   runs/<run>/manifest.json            what was submitted, settings
 *   runs/<run>/results/<item>.json      one result per item
 *   runs/<run>/failed/<item>.json       one failure record per failed item
 *   runs/<run>/input/manifest.<ext>     a detached run's manifest, uploaded by submit
 *   runs/<run>/index/<chunk>.json       the feeder's record of manifest order: line, item, id
 *   runs/<run>/export/<file>            the exported output and error files
 *   images/sha256/<hex>.<ext>           staged images, content addressed
 */
import { assertItemKey, assertRunId } from "../../core/ids.ts";

export const runPrefix = (run: string): string => `runs/${assertRunId(run)}/`;
export const manifestKey = (run: string): string => `${runPrefix(run)}manifest.json`;
export const resultsPrefix = (run: string): string => `${runPrefix(run)}results/`;
export const failuresPrefix = (run: string): string => `${runPrefix(run)}failed/`;
export const resultKey = (run: string, item: string): string => `${resultsPrefix(run)}${assertItemKey(item)}.json`;
export const failureKey = (run: string, item: string): string => `${failuresPrefix(run)}${assertItemKey(item)}.json`;
export const inputKey = (run: string, fileName: string): string => `${runPrefix(run)}input/${fileName}`;
export const indexPrefix = (run: string): string => `${runPrefix(run)}index/`;
/** Chunk numbers are zero-padded so that the listing is in manifest order. */
export const indexKey = (run: string, chunk: number): string => `${indexPrefix(run)}${String(chunk).padStart(9, "0")}.json`;
export const exportKey = (run: string, fileName: string): string => `${runPrefix(run)}export/${fileName}`;

export const IMAGES_PREFIX = "images/sha256/";

/** Lower-case file extension without the dot; "jpeg" stays "jpeg". Throws on an odd one. */
export function normalizeExt(ext: string): string {
  const e = ext.replace(/^\./, "").toLowerCase();
  if (!/^[a-z0-9]{1,10}$/.test(e)) {
    throw new Error(`invalid image extension ${JSON.stringify(ext)}; expected 1-10 letters or digits such as png`);
  }
  return e;
}

const CONTENT_TYPES: Record<string, string> = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  webp: "image/webp",
  gif: "image/gif",
  avif: "image/avif",
  tif: "image/tiff",
  tiff: "image/tiff",
};

/** The content type of an image key or file name, by its extension. */
export function contentTypeOf(name: string): string {
  return CONTENT_TYPES[name.slice(name.lastIndexOf(".") + 1).toLowerCase()] ?? "application/octet-stream";
}

export function imageKey(sha256Hex: string, ext: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256Hex)) {
    throw new Error(`invalid sha256 ${JSON.stringify(sha256Hex)}; expected 64 lower-case hex digits`);
  }
  return `${IMAGES_PREFIX}${sha256Hex}.${normalizeExt(ext)}`;
}

/** The item key of a results/ or failed/ key (the file name without `.json`). */
export function itemKeyOf(key: string): string {
  const name = key.slice(key.lastIndexOf("/") + 1);
  return name.endsWith(".json") ? name.slice(0, -".json".length) : name;
}

export function s3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** Split s3://bucket/key; undefined when it is not one. */
export function parseS3Uri(uri: string): { bucket: string; key: string } | undefined {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(uri);
  return m ? { bucket: m[1]!, key: m[2]! } : undefined;
}
