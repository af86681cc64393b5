/**
 * A run as a thing of its own, in Redis next to its ledger (`…:run:<run>:meta`), mirrored to
 * runs/<run>/manifest.json:
 *
 *   validating → in_progress → completed | cancelled | failed
 *
 *   validating   created; the feeder has not enqueued anything yet
 *   in_progress  items enqueued; the feeder may still be streaming the manifest
 *   completed    the manifest is fed to the end and every item has an outcome
 *   cancelled    `stagebeam cancel`: no more feeding, waiting jobs removed
 *   failed       the run itself could not proceed (unreadable manifest, wrong header, too many
 *                bad lines, nothing enqueueable), with the reason
 *
 * `completed` goes back to `in_progress` when `retry` re-enqueues failed items. The meta hash
 * also holds the run's settings (once per run: request jobs carry none), its source, and the
 * feeder's cursor and counters, so a feeder that died resumes where the last one stopped.
 */
import { type FleetRedis, runKeys, RunManifestSchema, runsIndexKey } from "../protocol/index.ts";
import { z } from "zod";
import { SearchSettingsSchema, type SearchSettings } from "../../../shared/core/search/settings.ts";
import { manifestKey, type S3Store } from "../../../shared/io/storage/s3-store.ts";

export const RUN_STATES = ["validating", "in_progress", "completed", "cancelled", "failed"] as const;
export type RunState = (typeof RUN_STATES)[number];
export const TERMINAL_STATES: readonly RunState[] = ["completed", "cancelled", "failed"];

/** Which states each state may be entered from. */
const ENTERED_FROM: Record<RunState, readonly RunState[]> = {
  validating: [],
  in_progress: ["validating", "completed"],
  completed: ["in_progress"],
  cancelled: ["validating", "in_progress"],
  failed: ["validating", "in_progress"],
};

export const RunSourceSchema = z.object({
  /** A local path (the submitting process feeds it), `-` (stdin), or an s3:// URI. */
  manifest: z.string(),
  format: z.enum(["jsonl", "csv", "folder"]),
  gzip: z.boolean(),
  imageRoot: z.string().nullable(),
  question: z.string().nullable(),
  /** Fed by a feed job in the fleet rather than by the submitting process. */
  detached: z.boolean(),
});
export type RunSource = z.infer<typeof RunSourceSchema>;

/** `N` lines or `P%` of the lines read so far; null: no limit. */
export const BadLineLimitSchema = z.union([
  z.object({ lines: z.number().int().nonnegative() }),
  z.object({ percent: z.number().min(0).max(100) }),
]);
export type BadLineLimit = z.infer<typeof BadLineLimitSchema>;

const num = z.coerce.number();
const json = <S extends z.ZodType>(schema: S) =>
  z.string().transform((s, ctx): z.output<S> => {
    const r = schema.safeParse(JSON.parse(s));
    if (!r.success) {
      ctx.addIssue({ code: "custom", message: r.error.message });
      return z.NEVER;
    }
    return r.data;
  });

export const RunMetaSchema = z.object({
  state: z.enum(RUN_STATES),
  reason: z.string().default(""),
  createdAt: num,
  updatedAt: num,
  settings: json(SearchSettingsSchema),
  source: json(RunSourceSchema),
  badLineLimit: json(BadLineLimitSchema.nullable()),
  chunkSize: num,
  maxBacklog: num,
  /** "1" once the feeder has read the manifest to its end. */
  fed: z.enum(["0", "1"]).default("0"),
  /** Manifest entries handled by the feeder so far (enqueued, skipped, bad or duplicate). */
  cursor: num.default(0),
  enqueued: num.default(0),
  bad: num.default(0),
  skipped: num.default(0),
  duplicates: num.default(0),
  /** When `export` last wrote the run's files to the end (the retention clock starts there). */
  exportedAt: num.optional(),
});
export type RunMeta = z.output<typeof RunMetaSchema>;

/**
 * Lua, shared by the scripts that may finish a run: KEYS meta, items, counts must be bound as
 * M, I, C. Sets `completed` when the manifest is fed and every item has an outcome.
 */
export const COMPLETE_IF_DONE_LUA = `
local function completeIfDone(M, I, C, now)
  if redis.call('HGET', M, 'state') ~= 'in_progress' or redis.call('HGET', M, 'fed') ~= '1' then return 0 end
  local finished = tonumber(redis.call('HGET', C, 'completed') or '0') + tonumber(redis.call('HGET', C, 'failed') or '0')
  if finished < redis.call('HLEN', I) then return 0 end
  redis.call('HSET', M, 'state', 'completed', 'reason', '', 'updatedAt', now)
  return 1
end
`;

const TRANSITION = `
local from = redis.call('HGET', KEYS[1], 'state')
if not from then return false end
for i = 4, #ARGV do
  if ARGV[i] == from then
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'updatedAt', ARGV[3])
    return from
  end
end
return false
`;

const FINISH_FEED = `${COMPLETE_IF_DONE_LUA}
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'fed', '1') end
return completeIfDone(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
`;

export interface NewRun {
  settings: SearchSettings;
  source: RunSource;
  badLineLimit: BadLineLimit | null;
  chunkSize: number;
  maxBacklog: number;
}

export interface FeedCounts {
  cursor: number;
  enqueued: number;
  bad: number;
  skipped: number;
  duplicates: number;
}

export class RunRegistry {
  private readonly settingsCache = new Map<string, SearchSettings>();
  private readonly stateCache = new Map<string, { state: RunState | null; at: number }>();

  constructor(
    private readonly redis: FleetRedis,
    private readonly prefix: string,
  ) {}

  keys(run: string) {
    return runKeys(this.prefix, run);
  }

  /** Creates the run in `validating` unless it exists; returns its meta and whether it is new. */
  async create(run: string, init: NewRun, now = Date.now()): Promise<{ created: boolean; meta: RunMeta }> {
    const k = this.keys(run);
    const fields = {
      state: "validating",
      reason: "",
      createdAt: String(now),
      updatedAt: String(now),
      settings: JSON.stringify(init.settings),
      source: JSON.stringify(init.source),
      badLineLimit: JSON.stringify(init.badLineLimit),
      chunkSize: String(init.chunkSize),
      maxBacklog: String(init.maxBacklog),
    };
    const created = (await this.redis.hsetnx(k.meta, "state", "validating")) === 1;
    if (created) {
      await this.redis.multi().hset(k.meta, fields).zadd(runsIndexKey(this.prefix), now, run).exec();
    }
    const meta = await this.get(run);
    if (!meta) throw new Error(`run ${run}: its record in Redis vanished while it was being created`);
    return { created, meta };
  }

  async get(run: string): Promise<RunMeta | null> {
    const raw = await this.redis.hgetall(this.keys(run).meta);
    if (raw.state === undefined || raw.settings === undefined) return null;
    const r = RunMetaSchema.safeParse(raw);
    if (!r.success) throw new Error(`run ${run}: its record in Redis is unreadable: ${r.error.message}`);
    return r.data;
  }

  /** The run's settings (cached: they never change for a run). */
  async settings(run: string): Promise<SearchSettings | null> {
    const known = this.settingsCache.get(run);
    if (known) return known;
    const raw = await this.redis.hget(this.keys(run).meta, "settings");
    if (raw === null) return null;
    const settings = SearchSettingsSchema.parse(JSON.parse(raw));
    this.settingsCache.set(run, settings);
    return settings;
  }

  /** The run's state, looked up at most every `maxAgeMs` per run (workers ask on every job). */
  async state(run: string, maxAgeMs = 1_000, now = Date.now()): Promise<RunState | null> {
    const known = this.stateCache.get(run);
    if (known && now - known.at < maxAgeMs) return known.state;
    const state = (await this.redis.hget(this.keys(run).meta, "state")) as RunState | null;
    this.stateCache.set(run, { state, at: now });
    if (this.stateCache.size > 1_000) this.stateCache.delete(this.stateCache.keys().next().value!);
    return state;
  }

  /** Moves the run to `to` when its state allows it; the state it left, or null when it did not move. */
  async transition(run: string, to: RunState, reason = "", now = Date.now()): Promise<RunState | null> {
    const from = await this.redis.eval(TRANSITION, 1, this.keys(run).meta, to, reason, String(now), ...ENTERED_FROM[to]);
    this.stateCache.delete(run);
    return (from as RunState | null) ?? null;
  }

  /** Adds a chunk's counts and moves the cursor past it. */
  async advanceFeed(run: string, d: FeedCounts): Promise<void> {
    const k = this.keys(run).meta;
    await this.redis
      .multi()
      .hset(k, "cursor", String(d.cursor))
      .hincrby(k, "enqueued", d.enqueued)
      .hincrby(k, "bad", d.bad)
      .hincrby(k, "skipped", d.skipped)
      .hincrby(k, "duplicates", d.duplicates)
      .exec();
  }

  /** The manifest has been read to its end; true when that completed the run. */
  async finishFeed(run: string, now = Date.now()): Promise<boolean> {
    const k = this.keys(run);
    return (await this.redis.eval(FINISH_FEED, 3, k.meta, k.items, k.counts, String(now), "1")) === 1;
  }

  /** Completes the run when it is fed and every item has an outcome (after a retry whose items all finished already). */
  async completeIfDone(run: string, now = Date.now()): Promise<boolean> {
    const k = this.keys(run);
    return (await this.redis.eval(FINISH_FEED, 3, k.meta, k.items, k.counts, String(now), "0")) === 1;
  }

  /** A fed run is fed again (a resubmit with more or fixed lines): the feeder starts from the top. */
  async restartFeed(run: string): Promise<void> {
    await this.redis.hset(this.keys(run).meta, "fed", "0", "cursor", "0");
  }

  async markExported(run: string, retentionSeconds: number, now = Date.now()): Promise<void> {
    const k = this.keys(run);
    const tx = this.redis.multi().hset(k.meta, "exportedAt", String(now));
    for (const key of Object.values(k)) tx.expire(key, retentionSeconds);
    await tx.exec();
  }

  /** Run names, newest first. Runs whose bookkeeping expired are dropped from the index here. */
  async names(limit = 1_000): Promise<string[]> {
    const names = await this.redis.zrevrange(runsIndexKey(this.prefix), 0, limit - 1);
    const alive = await Promise.all(names.map((n) => this.redis.exists(this.keys(n).meta)));
    const gone = names.filter((_, i) => alive[i] === 0);
    if (gone.length > 0) await this.redis.zrem(runsIndexKey(this.prefix), ...gone);
    return names.filter((_, i) => alive[i] === 1);
  }
}

/** Mirrors the run's state into runs/<run>/manifest.json (best effort: Redis is the authority). */
export async function mirrorRunState(store: S3Store, run: string, meta: Pick<RunMeta, "state" | "reason" | "updatedAt">) {
  const key = manifestKey(run);
  const manifest = await store.getJson(key, RunManifestSchema);
  if (!manifest) return;
  await store.putJson(key, {
    ...manifest,
    state: meta.state,
    reason: meta.reason,
    stateAt: new Date(meta.updatedAt).toISOString(),
  });
}
