/**
 * A run's bookkeeping in Redis, next to its queues (same hash-tagged prefix):
 *
 *   items     item → manifest line, for every item the producer took in: written after the
 *             item's job was added, or after a bad line's failure record was written.
 *             Re-running a submit skips what is there (idempotent, resumable). BullMQ's job
 *             ids alone cannot do this: a finished request job is removed
 *             (removeOnComplete), after which its id could be added again.
 *   outcomes  item → c (correct) | w (wrong) | d (done, no gold answer) | f:<reason> (failed in
 *             the fleet) | b:<reason> (a bad line, refused at submit)
 *   counts    completed, correct, wrong, failed, failed:<reason>, tokens, createdAt, firstAt, lastAt,
 *             workStartedAt (first step run by a worker)
 *   recent    item → when a worker finished it, trimmed to the status window (ops/status.ts)
 *
 * and, for the prefix as a whole, the run index: run → creation time, so the dashboard can list
 * runs without scanning keys.
 *
 * An outcome is recorded by one Lua script that updates `outcomes` and `counts` together and
 * only when the outcome changes, so a step that re-runs after a crash, or an item retried
 * after a failure, is counted once whichever attempt wins. The same script completes the run
 * when that was its last item (run-state.ts). `status` reads the counters in O(1).
 */
import { type FleetRedis, runKeys } from "../protocol/index.ts";
import { COMPLETE_IF_DONE_LUA } from "./run-state.ts";

export type Outcome = "c" | "w" | "d" | `f:${string}` | `b:${string}`;

/** How long completions are kept for the sliding throughput window. */
export const RECENT_WINDOW_MS = 120_000;

const BUMP_LUA = `
local function bump(C, o, by)
  local kind = string.sub(o, 1, 1)
  if kind == 'f' or kind == 'b' then
    redis.call('HINCRBY', C, 'failed', by)
    redis.call('HINCRBY', C, 'failed:' .. string.sub(o, 3), by)
  else
    redis.call('HINCRBY', C, 'completed', by)
    if kind == 'c' then redis.call('HINCRBY', C, 'correct', by) end
    if kind == 'w' then redis.call('HINCRBY', C, 'wrong', by) end
  end
end
`;

// KEYS outcomes, counts, meta, items, recent; ARGV item, outcome, at, tokens, by-worker (1/0).
const RECORD_OUTCOME = `${BUMP_LUA}${COMPLETE_IF_DONE_LUA}
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev == ARGV[2] then return 0 end
if prev then bump(KEYS[2], prev, -1) end
bump(KEYS[2], ARGV[2], 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not prev then redis.call('HINCRBY', KEYS[2], 'tokens', tonumber(ARGV[4])) end
redis.call('HSETNX', KEYS[2], 'firstAt', ARGV[3])
redis.call('HSET', KEYS[2], 'lastAt', ARGV[3])
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[5], tonumber(ARGV[3]), ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(ARGV[3]) - ${RECENT_WINDOW_MS})
end
return 1 + completeIfDone(KEYS[3], KEYS[4], KEYS[2], ARGV[3])
`;

// KEYS outcomes, counts; ARGV item. The item is pending again (a retry, a re-examined bad line).
const RESET_OUTCOME = `${BUMP_LUA}
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if not prev then return 0 end
bump(KEYS[2], prev, -1)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
`;

export interface RunCounts {
  /** Items the producer took in (enqueued, or recorded as failed at submit). */
  items: number;
  completed: number;
  correct: number;
  wrong: number;
  failed: number;
  failedByReason: Record<string, number>;
  tokens: number;
  createdAt: number | null;
  firstAt: number | null;
  lastAt: number | null;
  workStartedAt: number | null;
}

/** What recording an outcome did: nothing (the same outcome again), changed it, or also completed the run. */
export type Recorded = "unchanged" | "changed" | "completed-run";

export class RunLedger {
  constructor(
    private readonly redis: FleetRedis,
    private readonly prefix: string,
  ) {}

  keys(run: string) {
    return runKeys(this.prefix, run);
  }

  /** Manifest line each item was submitted from, or null when it was not. */
  async submittedLines(run: string, items: readonly string[]): Promise<(number | null)[]> {
    if (items.length === 0) return [];
    const values = await this.redis.hmget(this.keys(run).items, ...items);
    return values.map((v) => (v === null ? null : Number(v)));
  }

  async markSubmitted(run: string, entries: ReadonlyArray<readonly [item: string, line: number]>): Promise<void> {
    if (entries.length === 0) return;
    const flat: string[] = [];
    for (const [item, line] of entries) flat.push(item, String(line));
    await this.redis.hset(this.keys(run).items, ...flat);
  }

  async markCreated(run: string, at = Date.now()): Promise<void> {
    await this.redis.hsetnx(this.keys(run).counts, "createdAt", String(at));
  }

  /**
   * Records an item's outcome. `byWorker`: a worker finished it (it counts in the throughput
   * window); a line refused at submit does not.
   */
  async recordOutcome(
    run: string,
    item: string,
    outcome: Outcome,
    opts: { tokens?: number; at?: number; byWorker?: boolean } = {},
  ): Promise<Recorded> {
    const k = this.keys(run);
    const at = opts.at ?? Date.now();
    const r = await this.redis.eval(
      RECORD_OUTCOME,
      5,
      k.outcomes,
      k.counts,
      k.meta,
      k.items,
      k.recent,
      item,
      outcome,
      String(at),
      String(opts.tokens ?? 0),
      opts.byWorker === false ? "0" : "1",
    );
    return r === 0 ? "unchanged" : r === 2 ? "completed-run" : "changed";
  }

  /** Forgets an item's outcome, so that it is pending again; true when it had one. */
  async resetOutcome(run: string, item: string): Promise<boolean> {
    const k = this.keys(run);
    return (await this.redis.eval(RESET_OUTCOME, 2, k.outcomes, k.counts, item)) === 1;
  }

  /** Each item's outcome, null for one without an outcome yet. */
  async outcomesOf(run: string, items: readonly string[]): Promise<(Outcome | null)[]> {
    if (items.length === 0) return [];
    return (await this.redis.hmget(this.keys(run).outcomes, ...items)) as (Outcome | null)[];
  }

  /** Every failed item (f: and b: outcomes), optionally for one reason, a page at a time. */
  async *failedItems(run: string, reason?: string): AsyncGenerator<{ item: string; outcome: Outcome }[]> {
    let cursor = "0";
    do {
      const [next, flat] = await this.redis.hscan(this.keys(run).outcomes, cursor, "COUNT", 500);
      cursor = next;
      const page: { item: string; outcome: Outcome }[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const outcome = flat[i + 1] as Outcome;
        const kind = outcome[0];
        if (kind !== "f" && kind !== "b") continue;
        if (reason !== undefined && outcome.slice(2) !== reason) continue;
        page.push({ item: flat[i]!, outcome });
      }
      if (page.length > 0) yield page;
    } while (cursor !== "0");
  }

  /** Items finished by workers since `since` (ms epoch), within the kept window. */
  async completedSince(run: string, since: number): Promise<number> {
    return this.redis.zcount(this.keys(run).recent, since, "+inf");
  }

  /** The first step of the run's first item started now (the throughput window starts no earlier). */
  async markWorkStarted(run: string, at = Date.now()): Promise<void> {
    await this.redis.hsetnx(this.keys(run).counts, "workStartedAt", String(at));
  }

  async outcomeOf(run: string, item: string): Promise<Outcome | null> {
    return (await this.redis.hget(this.keys(run).outcomes, item)) as Outcome | null;
  }

  async counts(run: string): Promise<RunCounts> {
    const k = this.keys(run);
    const [raw, items] = await Promise.all([this.redis.hgetall(k.counts), this.redis.hlen(k.items)]);
    const num = (f: string) => Number(raw[f] ?? 0);
    const opt = (f: string) => (raw[f] === undefined ? null : Number(raw[f]));
    const failedByReason: Record<string, number> = {};
    for (const [f, v] of Object.entries(raw)) {
      if (f.startsWith("failed:") && Number(v) > 0) failedByReason[f.slice("failed:".length)] = Number(v);
    }
    return {
      items,
      completed: num("completed"),
      correct: num("correct"),
      wrong: num("wrong"),
      failed: num("failed"),
      failedByReason,
      tokens: num("tokens"),
      createdAt: opt("createdAt"),
      firstAt: opt("firstAt"),
      lastAt: opt("lastAt"),
      workStartedAt: opt("workStartedAt"),
    };
  }

  /** Whether the run has any trace in Redis at all. */
  async exists(run: string): Promise<boolean> {
    const k = this.keys(run);
    return (await this.redis.exists(k.items, k.counts)) > 0;
  }
}
