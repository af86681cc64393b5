/**
 * The jobs a worker process runs now, so that stopping can hand them back: once `stopping`, a
 * job that arrives goes straight back to its queue, and `handBackAll` moves every running job
 * back to wait (another worker takes it at once, not after its lock expires) and ends its
 * processor.
 */
import { WaitingError, type Job } from "bullmq";
import type { Logger } from "../../../shared/io/logging.ts";

interface Tracked {
  job: Job;
  token: string;
  handBack(err: Error): void;
}

export class JobTracker {
  private readonly active = new Map<string, Tracked>();
  stopping = false;

  get size(): number {
    return this.active.size;
  }

  /** Wraps a processor: refuses work once stopping, and lets `handBackAll` hand a running job back. */
  track<R>(queue: string, fn: (job: Job, token: string) => Promise<R>) {
    return async (job: Job, token?: string): Promise<R> => {
      if (token === undefined) throw new Error("BullMQ gave no lock token");
      if (this.stopping) {
        await job.moveToWait(token);
        throw new WaitingError();
      }
      const key = `${queue}/${job.id}`;
      let handBack!: (err: Error) => void;
      const handedBack = new Promise<never>((_, reject) => (handBack = reject));
      handedBack.catch(() => {});
      this.active.set(key, { job, token, handBack });
      try {
        return await Promise.race([fn(job, token), handedBack]);
      } finally {
        this.active.delete(key);
      }
    };
  }

  /** Moves every running job back to wait; how many moved. */
  async handBackAll(logger: Logger): Promise<number> {
    let handedBack = 0;
    for (const t of [...this.active.values()]) {
      try {
        await t.job.moveToWait(t.token);
        handedBack++;
      } catch (err) {
        logger.warn({ job: t.job.id, err: (err as Error).message }, "could not hand a job back; its lock will expire");
      }
      t.handBack(new WaitingError());
    }
    return handedBack;
  }
}
