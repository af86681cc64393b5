/**
 * A run's bookkeeping in Redis, next to its queues (same hash-tagged prefix):
 *
 *   items     item → manifest line, for every item the producer took in: written after the
 *             item's job was added, or after a bad line's failure record was written.
 *             Re-running a submit skips what is there (idempotent, resumable). BullMQ's job
 *             ids alone cannot do this: a finished request job is removed
 *             (removeOnComplete), after which its id could be added again.
 *   outcomes  item → c (correct) | w (wrong) | d (done, no gold answer) | f:<reason>
 *   counts    completed, correct, wrong, failed, failed:<reason>, tokens, createdAt, firstAt, lastAt
 *
 * and, for the prefix as a whole, the run index: run → creation time, so the dashboard can list
 * runs without scanning keys.
 *
 * An outcome is recorded by one Lua script that updates `outcomes` and `counts` together and
 * only when the outcome changes, so a step that re-runs after a crash cannot count an item
 * twice. `status` reads the counters in O(1), however large the run.
 */
import type { Redis } from "ioredis";
import { runIndexKey, runKeys } from "./ids.ts";

export type Outcome = "c" | "w" | "d" | `f:${string}`;

const RECORD_OUTCOME = `
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev == ARGV[2] then return 0 end
local function bump(o, by)
  local kind = string.sub(o, 1, 1)
  if kind == 'f' then
    redis.call('HINCRBY', KEYS[2], 'failed', by)
    redis.call('HINCRBY', KEYS[2], 'failed:' .. string.sub(o, 3), by)
  else
    redis.call('HINCRBY', KEYS[2], 'completed', by)
    if kind == 'c' then redis.call('HINCRBY', KEYS[2], 'correct', by) end
    if kind == 'w' then redis.call('HINCRBY', KEYS[2], 'wrong', by) end
  end
end
if prev then bump(prev, -1) end
bump(ARGV[2], 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not prev then redis.call('HINCRBY', KEYS[2], 'tokens', tonumber(ARGV[4])) end
redis.call('HSETNX', KEYS[2], 'firstAt', ARGV[3])
redis.call('HSET', KEYS[2], 'lastAt', ARGV[3])
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
}

export class RunLedger {
  constructor(
    private readonly redis: Redis,
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
    await this.redis
      .multi()
      .hsetnx(this.keys(run).counts, "createdAt", String(at))
      .zadd(runIndexKey(this.prefix), "NX", at, run)
      .exec();
  }

  /** The newest runs first, at most `limit` of them. */
  async runs(limit: number): Promise<string[]> {
    return this.redis.zrevrange(runIndexKey(this.prefix), 0, limit - 1);
  }

  /** Each item's outcome, null for one without an outcome yet. */
  async outcomesOf(run: string, items: readonly string[]): Promise<(Outcome | null)[]> {
    if (items.length === 0) return [];
    return (await this.redis.hmget(this.keys(run).outcomes, ...items)) as (Outcome | null)[];
  }

  /** Records an item's outcome; true when it changed anything. */
  async recordOutcome(run: string, item: string, outcome: Outcome, tokens = 0, at = Date.now()): Promise<boolean> {
    const k = this.keys(run);
    const changed = await this.redis.eval(RECORD_OUTCOME, 2, k.outcomes, k.counts, item, outcome, String(at), String(tokens));
    return changed === 1;
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
    };
  }

  /** Whether the run has any trace in Redis at all. */
  async exists(run: string): Promise<boolean> {
    const k = this.keys(run);
    return (await this.redis.exists(k.items, k.counts)) > 0;
  }
}
