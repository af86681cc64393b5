/**
 * Runs of `npm run bench:fleet`: a run submitted in this process (the producer, as `stagebeam
 * submit` runs it) and watched through its ledger counters. The watch reads one hash per poll
 * on its own connection and counts its polls, so that the bench can take its own commands out
 * of the server's command counts.
 */
import { createLogger } from "../../shared/io/logging.ts";
import type { S3Store } from "../../shared/io/storage/s3-store.ts";
import { type FleetQueues, type FleetRedis, openQueues, type RedisTarget, runKeys } from "../../workers/fleet/protocol/index.ts";
import { RunLedger, RunRegistry } from "../../workers/fleet/books/index.ts";
import { submitRun, type SubmitSummary } from "../../workers/fleet/feed/index.ts";
import type { SearchSettingsInput } from "../../shared/core/search/settings.ts";

export interface Shard {
  prefix: string;
  queues: FleetQueues;
  ledger: RunLedger;
  runs: RunRegistry;
}

export function openShard(target: RedisTarget, client: FleetRedis, prefix: string): Shard {
  return {
    prefix,
    queues: openQueues(target, prefix),
    ledger: new RunLedger(client, prefix),
    runs: new RunRegistry(client, prefix),
  };
}

/** Submits the manifest's `items` lines; with `backlog`, at most that many unfinished at once (and abortable). */
export function submitManifest(
  shard: Shard,
  store: S3Store,
  run: string,
  manifest: string,
  settings: SearchSettingsInput,
  items: number,
  flow: { backlog?: number; signal?: AbortSignal } = {},
): Promise<SubmitSummary> {
  const maxBacklog = flow.backlog ?? Math.max(items, 1);
  return submitRun(
    {
      run,
      manifest,
      settings,
      maxBacklog,
      chunkSize: Math.max(1, Math.min(500, Math.floor(maxBacklog / 4))),
      backlogPollMs: 100,
      ...(flow.signal ? { signal: flow.signal } : {}),
    },
    { queues: shard.queues, store, ledger: shard.ledger, runs: shard.runs, logger: createLogger({ level: "silent" }) },
  );
}

/** Items finished (completed or failed) over time, as the ledger counts them. */
export interface Progress {
  samples: { at: number; done: number }[];
  /** HGETALL calls the watch made (to take out of the command counts). */
  polls: number;
}

export class RunWatch {
  readonly progress: Progress = { samples: [], polls: 0 };
  private readonly keys: string[];
  /** Watches the runs together: `[prefix, run]` pairs (on a cluster, several prefixes). */
  constructor(
    private readonly client: FleetRedis,
    runs: readonly (readonly [prefix: string, run: string])[],
  ) {
    this.keys = runs.map(([prefix, run]) => runKeys(prefix, run).counts);
  }

  async done(): Promise<number> {
    let total = 0;
    for (const key of this.keys) {
      const c = await this.client.hgetall(key);
      this.progress.polls++;
      total += Number(c.completed ?? 0) + Number(c.failed ?? 0);
    }
    this.progress.samples.push({ at: performance.now(), done: total });
    return total;
  }

  /** Polls until `n` items are done, or until `untilMs` (performance.now()) has passed. */
  async waitFor(n: number, opts: { pollMs: number; untilMs?: number; timeoutMs?: number }): Promise<number> {
    const deadline = performance.now() + (opts.timeoutMs ?? 600_000);
    for (;;) {
      const done = await this.done();
      if (done >= n) return done;
      const now = performance.now();
      if (opts.untilMs !== undefined && now >= opts.untilMs) return done;
      if (now > deadline) throw new Error(`only ${done} of ${n} items finished within ${opts.timeoutMs ?? 600_000} ms`);
      await new Promise((r) => setTimeout(r, opts.pollMs));
    }
  }
}

/** Items finished per second inside [from, to] (performance.now() times). */
export function rateIn(progress: Progress, from: number, to: number): { items: number; seconds: number; perSecond: number } {
  const at = (t: number) => progress.samples.filter((s) => s.at <= t).at(-1)?.done ?? 0;
  const inside = progress.samples.filter((s) => s.at >= from && s.at <= to);
  const seconds = inside.length < 2 ? 0 : (inside.at(-1)!.at - inside[0]!.at) / 1000;
  const items = inside.length < 2 ? 0 : inside.at(-1)!.done - at(inside[0]!.at);
  return { items, seconds, perSecond: seconds > 0 ? items / seconds : 0 };
}
