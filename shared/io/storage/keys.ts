/**
 * The S3 key layout (DESIGN §2) and the sanitisation of user-supplied ids into key segments.
 *
 *   runs/<run>/manifest.json            what was submitted, settings
 *   runs/<run>/results/<item>.json      one result per item
 *   runs/<run>/failed/<item>.json       one failure record per failed item
 *   images/sha256/<hex>.<ext>           staged images, content addressed
 */
import { createHash } from "node:crypto";

const SAFE_CHARS = /^[A-Za-z0-9._-]+$/;
const UNSAFE_RUN = /[^A-Za-z0-9._-]+/g;
/** Longest sanitised id; longer ids are cut and get the hash suffix. */
export const MAX_ITEM_KEY_LENGTH = 128;
const HASH_HEX = 10;

function shortHash(s: string): string {
  return createHash("sha256").update(s, "utf8").digest("hex").slice(0, HASH_HEX);
}

/**
 * Turn a user item id into a safe key segment. Ids made only of [A-Za-z0-9._-] (and not
 * only dots, at most 128 characters) are kept as they are; any other id has each run of
 * other characters replaced by `_`, is cut to fit, and gets `-<10 hex of sha256(id)>`
 * appended, so two different ids do not meet by accident. Idempotent. Throws on an empty id.
 */
export function sanitizeItemId(id: string): string {
  if (typeof id !== "string" || id.length === 0) {
    throw new Error("item id is empty; expected a non-empty string");
  }
  if (SAFE_CHARS.test(id) && id.length <= MAX_ITEM_KEY_LENGTH && !/^\.+$/.test(id)) return id;
  const base = id.replace(UNSAFE_RUN, "_").slice(0, MAX_ITEM_KEY_LENGTH - HASH_HEX - 1);
  return `${base}-${shortHash(id)}`;
}

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Run ids are chosen by us or by an operator: they must already be safe (no silent rewriting). */
export function assertRunId(run: string): string {
  if (!RUN_ID.test(run)) {
    throw new Error(
      `invalid run id ${JSON.stringify(run)}; expected 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`,
    );
  }
  return run;
}

export const runPrefix = (run: string): string => `runs/${assertRunId(run)}/`;
export const manifestKey = (run: string): string => `${runPrefix(run)}manifest.json`;
export const resultsPrefix = (run: string): string => `${runPrefix(run)}results/`;
export const failuresPrefix = (run: string): string => `${runPrefix(run)}failed/`;
export const resultKey = (run: string, itemId: string): string => `${resultsPrefix(run)}${sanitizeItemId(itemId)}.json`;
export const failureKey = (run: string, itemId: string): string => `${failuresPrefix(run)}${sanitizeItemId(itemId)}.json`;

export const IMAGES_PREFIX = "images/sha256/";

/** Lower-case file extension without the dot; "jpeg" stays "jpeg". Throws on an odd one. */
export function normalizeExt(ext: string): string {
  const e = ext.replace(/^\./, "").toLowerCase();
  if (!/^[a-z0-9]{1,10}$/.test(e)) {
    throw new Error(`invalid image extension ${JSON.stringify(ext)}; expected 1-10 letters or digits such as png`);
  }
  return e;
}

export function imageKey(sha256Hex: string, ext: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256Hex)) {
    throw new Error(`invalid sha256 ${JSON.stringify(sha256Hex)}; expected 64 lower-case hex digits`);
  }
  return `${IMAGES_PREFIX}${sha256Hex}.${normalizeExt(ext)}`;
}

/** The sanitised item id of a results/ or failed/ key (the file name without `.json`). */
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
