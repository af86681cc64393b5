/**
 * The producer's backpressure: before adding jobs it waits while the request queue holds too
 * many unfinished items, which bounds the search states kept in Redis however long the
 * manifest.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Queue } from "bullmq";

/** Request jobs not finished yet: waiting, active or waiting for their children. */
const UNFINISHED = ["waiting", "prioritized", "delayed", "active", "waiting-children"] as const;

export interface BacklogOptions {
  maxBacklog: number;
  /** How often to look at the backlog while it is full. */
  pollMs: number;
  signal?: AbortSignal;
  /** After every look: the unfinished jobs, and whether the producer has to wait. */
  onBacklog(backlog: number, throttled: boolean): void;
}

/**
 * Resolves true once `n` more jobs fit under `maxBacklog` (or the queue is empty, so that more
 * than the bound cannot wait forever), false when aborted while waiting.
 */
export async function waitForRoom(queue: Pick<Queue, "getJobCounts">, n: number, opts: BacklogOptions): Promise<boolean> {
  for (;;) {
    const counts = await queue.getJobCounts(...UNFINISHED);
    const backlog = Object.values(counts).reduce((s, x) => s + x, 0);
    const room = backlog === 0 || backlog + n <= opts.maxBacklog;
    opts.onBacklog(backlog, !room);
    if (room) return true;
    if (opts.signal?.aborted) return false;
    // Abortable and leaves no listener behind (a long wait polls thousands of times).
    await sleep(opts.pollMs, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => {});
    if (opts.signal?.aborted) return false;
  }
}
