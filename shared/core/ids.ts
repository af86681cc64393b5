/**
 * The id policy: what a run id and an item id may hold. Every place that names a run or an
 * item (S3 keys, BullMQ job ids, Redis keys, the search's work ids) follows these rules, so an
 * id valid in one is valid in all.
 *
 * An item key holds neither `.` nor `:`: the search's work ids are `<item>:<step>:<work>` and
 * must split into exactly three parts (BullMQ's rule for custom job ids), and a key segment
 * made only of [A-Za-z0-9_~-] can never be `.`/`..` or hide a path.
 *
 * A user's id is its own key only when it is made of [A-Za-z0-9_-]; every key stagebeam makes
 * itself (a rewritten id, a bad line's key) holds a `~`, which no user id keeps. So no id can
 * be crafted to take another line's key.
 */
import { createHash } from "node:crypto";

/** Run ids are chosen by us or by an operator; `.` is allowed since a run never sits inside a work id. */
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Run ids must already be safe: they are refused, never silently rewritten. */
export function assertRunId(run: string): string {
  if (!RUN_ID_PATTERN.test(run)) {
    throw new Error(
      `invalid run id ${JSON.stringify(run)}; expected 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`,
    );
  }
  return run;
}

/** Longest item key; longer user ids are cut and get a hash suffix. */
export const MAX_ITEM_ID_LENGTH = 120;
/** An item key: a user's id kept as it is, or a key stagebeam made (with a `~`). */
export const ITEM_ID_PATTERN = new RegExp(`^[A-Za-z0-9_~-]{1,${MAX_ITEM_ID_LENGTH}}$`);
/** The user ids that are their own key. */
const VERBATIM_ID = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_ITEM_ID_LENGTH}}$`);
const HASH_HEX = 10;

/**
 * The item key for a user's id (a manifest id, a file name): the id itself when it is made of
 * [A-Za-z0-9_-] and fits; otherwise every run of other characters becomes `_`, the result is
 * cut to fit and `~<10 hex of sha256(id)>` is appended, so different ids stay different. Takes
 * ids, not keys: a key given back to it is rewritten like any id holding a `~`. Throws on an
 * empty id.
 */
export function toItemId(userId: string): string {
  if (typeof userId !== "string" || userId.length === 0) throw new Error("item id is empty; expected a non-empty string");
  if (VERBATIM_ID.test(userId)) return userId;
  const hash = createHash("sha256").update(userId, "utf8").digest("hex").slice(0, HASH_HEX);
  const base = userId.replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, MAX_ITEM_ID_LENGTH - HASH_HEX - 1);
  return `${base}~${hash}`;
}

/** The key of a manifest line that has no usable id of its own (`what`: line, dup-line). */
export const lineItemKey = (what: "line" | "dup-line", line: number): string => `${what}~${line}`;

/** An item key as it is, checked: S3 keys and job ids are built only from keys. */
export function assertItemKey(key: string): string {
  if (!ITEM_ID_PATTERN.test(key)) {
    throw new Error(
      `invalid item key ${JSON.stringify(key)}; expected 1-${MAX_ITEM_ID_LENGTH} characters of A-Z a-z 0-9 _ - ~ (toItemId makes one from an id)`,
    );
  }
  return key;
}
