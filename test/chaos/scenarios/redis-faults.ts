/**
 * Redis gone mid-run, then back on the same data directory, three ways (one file: the
 * scenarios differ only in how Redis goes):
 *
 *   shutdown      SHUTDOWN: the AOF is fsynced, nothing is lost;
 *   kill          kill -9: the AOF holds every write (they are in the page cache), nothing lost;
 *   lost-second   kill -9 with the AOF cut back to its length of 1 s before (RedisControl
 *                 .killLosingLast): a power cut under `appendfsync everysec`, or a failover to
 *                 a replica a second behind. Jobs completed in that second come back as
 *                 waiting or active jobs; their results are already in S3, and the
 *                 conditional write (S3Store.putJsonIfAbsent) must keep them from being
 *                 written again.
 *
 * The fault is timed right after an item completes, so the lost second holds a completion.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { say, type FaultScenario } from "../chaos-kit.ts";

export type RedisFault = "shutdown" | "kill" | "lost-second";

const TITLES: Record<RedisFault, string> = {
  shutdown: "Redis SHUTDOWN mid-run, restarted",
  kill: "Redis kill -9 mid-run, restarted on its AOF",
  "lost-second": "Redis kill -9 losing the AOF's last second",
};

export function redisFault(how: RedisFault, downSeconds = 5): FaultScenario {
  return {
    name: `redis-${how}`,
    title: TITLES[how],
    items: 60,
    async fault({ env, run, items }) {
      const done = (await env.fleet.ledger.counts(run)).completed;
      // Strike just after the next completion.
      for (;;) {
        const now = (await env.fleet.ledger.counts(run)).completed;
        if (now >= items) throw new Error("every item was done before the fault could strike: submit more items");
        if (now > done) break;
        await sleep(20);
      }
      const notes: string[] = [];
      if (how === "shutdown") await env.redis.shutdown();
      else if (how === "kill") await env.redis.kill();
      else {
        const { bytesLost } = await env.redis.killLosingLast(1_000);
        notes.push(`${bytesLost} bytes of AOF lost`);
      }
      say(`${run}: Redis ${how} after ${done + 1} items`);
      await sleep(downSeconds * 1000);
      await env.redis.restart();
      const after = (await env.fleet.ledger.counts(run)).completed;
      say(`${run}: Redis back after ${downSeconds} s with ${after} items completed`);
      notes.push(`down ${downSeconds} s`, `completed before ${done + 1}, after restart ${after}`);
      return notes;
    },
  };
}
