/**
 * Names in Redis: queue names, job ids and the run ledger's keys.
 *
 * Job ids are deterministic, so a step that re-runs after a crash asks for the same children
 * and BullMQ adds nothing twice:
 *
 *   request job   <run>/<item>
 *   child job     <run>/<item>/<step>/<work>      (the search's work id with ':' → '/')
 *
 * BullMQ rejects a custom id holding ':' unless it splits into exactly three parts, so ids use
 * '/' instead; none of run, item, step or work can hold a '/', which keeps the mapping
 * reversible. The run is part of every id, so two runs over the same items never meet.
 * Run and item ids follow the id policy (shared/core/ids.ts).
 */
import { assertRunId } from "../../../shared/core/ids.ts";

export const QUEUES = { request: "request", generate: "generate", judge: "judge", verify: "verify", feed: "feed" } as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];
export const QUEUE_NAMES: readonly QueueName[] = [QUEUES.request, QUEUES.generate, QUEUES.judge, QUEUES.verify, QUEUES.feed];

export function requestJobId(run: string, item: string): string {
  return `${assertRunId(run)}/${item}`;
}

/** The child job id of a work id `<item>:<step>:<work>` of the search. */
export function childJobId(run: string, workId: string): string {
  if (workId.includes("/")) throw new Error(`work id ${JSON.stringify(workId)} contains '/'`);
  return `${assertRunId(run)}/${workId.replaceAll(":", "/")}`;
}

/** The work id back from a child job id of the given run; undefined when it is not one. */
export function workIdOf(run: string, jobId: string): string | undefined {
  const head = `${run}/`;
  return jobId.startsWith(head) ? jobId.slice(head.length).replaceAll("/", ":") : undefined;
}

/**
 * Keys of a run's ledger. They live under the queues' hash-tagged prefix, so on Redis Cluster
 * they share the queues' slot (scripts may touch them together).
 */
export function runKeys(prefix: string, run: string) {
  const base = `${prefix}:stagebeam:run:${assertRunId(run)}`;
  return {
    /** item id → `<line>` (submitted) — the producer's idempotency record. */
    items: `${base}:items`,
    /** item id → outcome code (c correct, w wrong, d done without gold, f:<reason> failed). */
    outcomes: `${base}:outcomes`,
    /** counters: completed, correct, wrong, failed, failed:<reason>, tokens, firstAt, lastAt, createdAt. */
    counts: `${base}:counts`,
    /** The run itself: state, reason, settings, source, the feeder's cursor (books/run-state.ts). */
    meta: `${base}:meta`,
    /** item → time of its completion by a worker, over the last minutes (status's sliding window). */
    recent: `${base}:recent`,
  };
}

/** Every run by creation time (`stagebeam runs`). */
export function runsIndexKey(prefix: string): string {
  return `${prefix}:stagebeam:runs`;
}

/** The feeder job of a run: one per run, so two feeders never stream the same manifest at once. */
export function feedJobId(run: string): string {
  return `feed/${assertRunId(run)}`;
}
