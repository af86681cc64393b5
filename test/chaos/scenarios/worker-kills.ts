/**
 * A random worker process `kill -9`ed every few seconds until the run ends, a new one started
 * in its place at once (as a supervisor restarts a crashed pod). Its jobs stall and are taken
 * over when their locks expire (the workers' --lock-duration 30); nothing is lost or done twice.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { say, type FaultScenario } from "../chaos-kit.ts";

export function workerKills(everySeconds: number): FaultScenario {
  return {
    name: "worker-kills",
    title: `kill -9 of a random worker every ${everySeconds} s`,
    items: 60,
    // From the start: items finish together near the end of a run, so a sixth done is late.
    strikesAfter: 0,
    async fault({ env, run, rng, ended }) {
      let kills = 0;
      for (;;) {
        await sleep(everySeconds * 1000);
        if (ended()) break;
        const live = env.workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
        const victim = rng.pick(live);
        env.killed.add(victim);
        await victim.kill();
        kills++;
        say(`${run}: killed worker pid ${victim.pid} (kill ${kills})`);
        await env.startWorkers(1);
      }
      if (kills === 0) throw new Error("the run ended before the first kill: submit more items");
      return [`${kills} workers killed`];
    },
  };
}
