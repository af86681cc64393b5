/**
 * What the dashboard reads from the fleet: the runs, a run's items and failures from S3 and the
 * ledger, an item's result record and its image. Read-only; the actions are in actions.ts.
 */
import { assertRunId, ITEM_ID_PATTERN } from "../../shared/core/ids.ts";
import {
  contentTypeOf,
  failureKey,
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
import { queueCounts, runStatus, streamRecords, type RunStatus } from "../../workers/fleet/ops/index.ts";

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
export const ITEMS_SHOWN = 500;
export const FAILURES_SHOWN = 200;

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
  return Promise.all(runs.map((run) => runStatus(run, { store: src.store, ledger: src.ledger })));
}

/** Job counts of the queues by state (shared by every run). */
export function queuesOverview(src: Pick<FleetSources, "queues">): Promise<RunStatus["queues"]> {
  return queueCounts(src.queues.all);
}

export interface ItemRow {
  item: string;
  outcome: Outcome | null;
}

export interface RunDetail {
  status: RunStatus;
  /** Items with a result, in key order, at most ITEMS_SHOWN. */
  results: ItemRow[];
  /** More results exist than are shown. */
  moreResults: boolean;
  failures: FailureRecord[];
  moreFailures: boolean;
}

export async function runDetail(src: FleetSources, run: string): Promise<RunDetail> {
  checkedRun(run);
  const status = await runStatus(run, { store: src.store, ledger: src.ledger });
  if (status.manifest === null && status.counts.items === 0 && status.counts.createdAt === null) {
    throw new RequestError(`no run named ${JSON.stringify(run)}`);
  }
  const items: string[] = [];
  let moreResults = false;
  for await (const obj of src.store.list(resultsPrefix(run))) {
    if (!obj.key.endsWith(".json")) continue;
    if (items.length === ITEMS_SHOWN) {
      moreResults = true;
      break;
    }
    items.push(itemKeyOf(obj.key));
  }
  const outcomes = await src.ledger.outcomesOf(run, items);
  const { records: failures, more: moreFailures } = await failuresOf(src, run);
  return {
    status,
    results: items.map((item, i) => ({ item, outcome: outcomes[i] ?? null })),
    moreResults,
    failures,
    moreFailures,
  };
}

export async function failuresOf(
  src: Pick<FleetSources, "store">,
  run: string,
): Promise<{ records: FailureRecord[]; more: boolean }> {
  checkedRun(run);
  const records: FailureRecord[] = [];
  for await (const line of streamRecords(src.store, run, "failed")) {
    if (records.length === FAILURES_SHOWN) return { records, more: true };
    records.push(FailureRecordSchema.parse(JSON.parse(line)));
  }
  return { records, more: false };
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
