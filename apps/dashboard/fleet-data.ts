/**
 * What the dashboard reads from the fleet: the runs, a run's items and failures from S3 and the
 * ledger, an item's result record and its image. Read-only; the actions are in actions.ts.
 */
import { assertRunId, ITEM_ID_PATTERN, toItemId } from "../../shared/core/ids.ts";
import {
  contentTypeOf,
  failureKey,
  failuresPrefix,
  IMAGES_PREFIX,
  itemKeyOf,
  parseS3Uri,
  resultKey,
  resultsPrefix,
  type S3Store,
} from "../../shared/io/storage/s3-store.ts";
import type { Outcome, RunLedger, RunRegistry } from "../../workers/fleet/books/index.ts";
import {
  type FailureRecord,
  FailureRecordSchema,
  type FleetQueues,
  type ResultRecord,
  ResultRecordSchema,
} from "../../workers/fleet/protocol/index.ts";
import { queueCounts, runStatus, type RunStatus } from "../../workers/fleet/ops/index.ts";

export interface FleetSources {
  store: S3Store;
  ledger: RunLedger;
  runs: RunRegistry;
  queues: FleetQueues;
}

/** A request the dashboard cannot answer: a bad id (400) or nothing there (404). */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 404 = 404,
  ) {
    super(message);
    this.name = "RequestError";
  }
}

export const RUNS_SHOWN = 100;
/** Items, and failure records, on one page of a run; a page is one S3 listing however long the run. */
export const DEFAULT_PAGE_SIZE = 100;

/** The runs the dashboard lists, newest first: the one place that decides which runs those are. */
export function listRuns(src: Pick<FleetSources, "runs">, limit = RUNS_SHOWN): Promise<string[]> {
  return src.runs.names(limit);
}

export function checkedRun(run: string): string {
  try {
    return assertRunId(run);
  } catch (err) {
    throw new RequestError((err as Error).message, 400);
  }
}

export function checkedItem(item: string): string {
  if (!ITEM_ID_PATTERN.test(item)) throw new RequestError(`item ${JSON.stringify(item)} is not an item id`, 400);
  return item;
}

export async function runsOverview(src: FleetSources): Promise<RunStatus[]> {
  const runs = await listRuns(src);
  return Promise.all(runs.map((run) => runStatus(run, { store: src.store, ledger: src.ledger, runs: src.runs })));
}

/** Job counts of the queues by state (shared by every run). */
export function queuesOverview(src: Pick<FleetSources, "queues">): Promise<RunStatus["queues"]> {
  return queueCounts(src.queues.all);
}

export interface ItemRow {
  item: string;
  outcome: Outcome | null;
}

/** Where a page of a run starts: after an item key (exclusive), for the results and the failures apart. */
export interface PageCursor {
  /** Results after this item key. */
  after?: string;
  /** Failure records after this item key. */
  failuresAfter?: string;
  /** Only the items whose key starts with this (the search by id). */
  prefix?: string;
}

export interface Paged<T> {
  rows: T[];
  /** The item key to start the next page after; null on the last page. */
  next: string | null;
}

export interface RunDetail {
  status: RunStatus;
  cursor: PageCursor;
  /** One page of the items with a result, in key order. */
  results: Paged<ItemRow>;
  /** One page of the failure records, in key order. */
  failures: Paged<FailureRecord>;
}

/** A search or a cursor, checked: item keys only, so that a listing can never leave the run's prefix. */
export function checkedCursor(q: Record<string, unknown>): PageCursor {
  const key = (name: string, pattern: RegExp) => {
    const v = q[name];
    if (v === undefined || v === "") return undefined;
    if (typeof v !== "string" || !pattern.test(v))
      throw new RequestError(`${name}: ${JSON.stringify(v)} is not an item key`, 400);
    return v;
  };
  const prefix = /^[A-Za-z0-9_~-]{1,120}$/;
  const out: PageCursor = {};
  const after = key("after", ITEM_ID_PATTERN);
  const failuresAfter = key("failuresAfter", ITEM_ID_PATTERN);
  const p = key("prefix", prefix);
  if (after !== undefined) out.after = after;
  if (failuresAfter !== undefined) out.failuresAfter = failuresAfter;
  if (p !== undefined) out.prefix = p;
  return out;
}

/** One page of a run's item keys under results/ or failed/, after `after`, starting with `prefix`. */
async function pageOfKeys(
  src: Pick<FleetSources, "store">,
  folder: string,
  after: string | undefined,
  prefix: string | undefined,
  pageSize: number,
): Promise<{ items: string[]; next: string | null }> {
  const { keys, next } = await src.store.listPage(`${folder}${prefix ?? ""}`, {
    maxKeys: pageSize,
    ...(after !== undefined ? { startAfter: `${folder}${after}.json` } : {}),
  });
  const items = keys.filter((k) => k.endsWith(".json")).map(itemKeyOf);
  return { items, next: next === null ? null : itemKeyOf(next) };
}

export async function resultsPage(
  src: Pick<FleetSources, "store" | "ledger">,
  run: string,
  cursor: PageCursor,
  pageSize = DEFAULT_PAGE_SIZE,
): Promise<Paged<ItemRow>> {
  checkedRun(run);
  const { items, next } = await pageOfKeys(src, resultsPrefix(run), cursor.after, cursor.prefix, pageSize);
  const outcomes = await src.ledger.outcomesOf(run, items);
  return { rows: items.map((item, i) => ({ item, outcome: outcomes[i] ?? null })), next };
}

export async function failuresPage(
  src: Pick<FleetSources, "store">,
  run: string,
  cursor: PageCursor,
  pageSize = DEFAULT_PAGE_SIZE,
): Promise<Paged<FailureRecord>> {
  checkedRun(run);
  const { items, next } = await pageOfKeys(src, failuresPrefix(run), cursor.failuresAfter, cursor.prefix, pageSize);
  const records = await Promise.all(items.map((item) => src.store.getJson(failureKey(run, item), FailureRecordSchema)));
  return { rows: records.filter((r): r is FailureRecord => r !== undefined), next };
}

export async function runDetail(
  src: FleetSources,
  run: string,
  cursor: PageCursor = {},
  pageSize = DEFAULT_PAGE_SIZE,
): Promise<RunDetail> {
  checkedRun(run);
  const status = await runStatus(run, { store: src.store, ledger: src.ledger, runs: src.runs });
  if (status.manifest === null && status.counts.items === 0 && status.counts.createdAt === null) {
    throw new RequestError(`no run named ${JSON.stringify(run)}`);
  }
  const [results, failures] = await Promise.all([
    resultsPage(src, run, cursor, pageSize),
    failuresPage(src, run, cursor, pageSize),
  ]);
  return { status, cursor, results, failures };
}

/**
 * The item a search names, when it names one: the id as the user wrote it (its key made by
 * toItemId) or an item key, with a result or a failure record. Null sends the search on to a
 * listing by prefix.
 */
export async function findItem(src: Pick<FleetSources, "store">, run: string, q: string): Promise<string | null> {
  checkedRun(run);
  const candidates = new Set([toItemId(q), ...(ITEM_ID_PATTERN.test(q) ? [q] : [])]);
  for (const item of candidates) {
    if ((await src.store.exists(resultKey(run, item))) || (await src.store.exists(failureKey(run, item)))) return item;
  }
  return null;
}

/** The item's result record, or its failure record when it failed. */
export async function itemRecord(
  src: Pick<FleetSources, "store">,
  run: string,
  item: string,
): Promise<ResultRecord | FailureRecord> {
  checkedRun(run);
  checkedItem(item);
  const result = await src.store.getJson(resultKey(run, item), ResultRecordSchema);
  if (result !== undefined) return result;
  const failure = await src.store.getJson(failureKey(run, item), FailureRecordSchema);
  if (failure !== undefined) return failure;
  throw new RequestError(`run ${run} has no result or failure record for item ${item}`);
}

/**
 * The item's image from the bucket, proxied: only a staged image (images/sha256/… in our own
 * bucket) is served, so a record can never make the dashboard fetch anything else.
 */
export async function itemImage(
  src: Pick<FleetSources, "store">,
  run: string,
  item: string,
): Promise<{ bytes: Uint8Array; contentType: string }> {
  const record = await itemRecord(src, run, item);
  const uri = record.kind === "result" ? record.image : record.input.image;
  const at = uri === null ? undefined : parseS3Uri(uri);
  if (at === undefined || at.bucket !== src.store.bucket || !at.key.startsWith(IMAGES_PREFIX)) {
    throw new RequestError(`item ${item} of run ${run} has no staged image`);
  }
  const bytes = await src.store.getBytes(at.key);
  if (bytes === undefined) throw new RequestError(`the image of item ${item} of run ${run} is no longer in the bucket`);
  return { bytes, contentType: contentTypeOf(at.key) };
}
