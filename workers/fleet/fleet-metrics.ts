/** Fleet-side metric helpers: the queue-depth collector and a tokens/s window. */
import type { Queue } from "bullmq";
import { Counter, type Registry } from "prom-client";
import type { QueueCollector, QueueDepth } from "../../shared/io/metrics.ts";

export const QUEUE_STATES = ["waiting", "prioritized", "active", "delayed", "waiting-children", "completed", "failed"] as const;

/** stagebeam_queue_jobs{queue,state} from BullMQ's getJobCounts, read at scrape time. */
export function queueCollector(queues: readonly Queue[]): QueueCollector {
  return async () => {
    const rows: QueueDepth[] = [];
    const all = await Promise.all(queues.map(async (q) => [q.name, await q.getJobCounts(...QUEUE_STATES)] as const));
    for (const [queue, counts] of all) {
      for (const state of QUEUE_STATES) rows.push({ queue, state, count: counts[state] ?? 0 });
    }
    return rows;
  };
}

/** Tokens per second over a sliding window, for stagebeam_tokens_per_second. */
export class TokenRate {
  private events: { t: number; n: number }[] = [];
  constructor(
    private readonly windowMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  add(tokens: number): void {
    if (tokens > 0) this.events.push({ t: this.now(), n: tokens });
  }

  perSecond(): number {
    const cutoff = this.now() - this.windowMs;
    while (this.events.length > 0 && this.events[0]!.t < cutoff) this.events.shift();
    const total = this.events.reduce((s, e) => s + e.n, 0);
    return total / (this.windowMs / 1000);
  }
}

/** The producer's own series (registered next to the shared ones). */
export function producerMetrics(registry: Registry) {
  return {
    itemsSubmitted: new Counter({
      name: "stagebeam_items_submitted_total",
      help: "Manifest lines the producer handled, by outcome: enqueued, skipped (already submitted), bad (recorded as failed), duplicate.",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    imagesStaged: new Counter({
      name: "stagebeam_images_staged_total",
      help: "Local images the producer staged in S3, by whether they had to be uploaded.",
      labelNames: ["uploaded"] as const,
      registers: [registry],
    }),
  };
}
export type ProducerMetrics = ReturnType<typeof producerMetrics>;
