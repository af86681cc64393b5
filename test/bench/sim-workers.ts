/**
 * A process of the simulated fleet of `npm run bench:fleet`: `count` fleet workers
 * (startFleetWorker, as `stagebeam worker` runs it) in this one process, each over its own
 * latency host (latency-host.ts). The parent (fleet.ts) forks it with the settings as JSON;
 * it answers `ready`, then on `stats` the GPU time its hosts spent and this process's event-loop
 * activity and CPU time since start (so the bench can tell a busy Node event loop from a busy
 * Redis), and exits on `stop`.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { performance } from "node:perf_hooks";
import type { S3Config } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { startFleetWorker, type FleetWorker } from "../../workers/fleet/worker/index.ts";
import { createLatencyHost, type LatencyHost, type LatencyModel } from "./latency-host.ts";

export interface SimWorkersSpec {
  redisUrl: string;
  cluster: boolean;
  /** One queue prefix per worker, in order (workers of several shards share a process). */
  prefixes: string[];
  s3: S3Config;
  model: LatencyModel;
  concurrency: number;
  name: string;
}

export interface SimStats {
  busySlotSeconds: number;
  /** Event-loop active and idle milliseconds since start (performance.eventLoopUtilization). */
  eluActive: number;
  eluIdle: number;
  /** User + system CPU seconds since start. */
  cpuSeconds: number;
  at: number;
}

export interface SimProcess {
  stats(): Promise<SimStats>;
  kill(): Promise<void>;
}

export async function startSimProcess(spec: SimWorkersSpec): Promise<SimProcess> {
  const child: ChildProcess = fork(import.meta.filename, [JSON.stringify(spec)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const [first] = (await Promise.race([
    once(child, "message"),
    once(child, "exit").then(([code]) => {
      throw new Error(`simulated workers ${spec.name} exited with code ${code} before they were ready`);
    }),
  ])) as [unknown];
  if (first !== "ready") throw new Error(`simulated workers ${spec.name}: unexpected first message ${JSON.stringify(first)}`);
  return {
    async stats() {
      child.send("stats");
      const [m] = (await once(child, "message")) as [SimStats];
      return m;
    },
    async kill() {
      if (child.exitCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    },
  };
}

if (import.meta.filename === process.argv[1] && process.send !== undefined) {
  const spec = JSON.parse(process.argv[2]!) as SimWorkersSpec;
  const store = S3Store.fromConfig(spec.s3);
  const logger = createLogger({ level: "silent" });
  const hosts: LatencyHost[] = [];
  const workers: FleetWorker[] = [];
  for (const [i, prefix] of spec.prefixes.entries()) {
    const host = createLatencyHost(spec.model);
    hosts.push(host);
    workers.push(
      await startFleetWorker({
        redisUrl: spec.redisUrl,
        redisCluster: spec.cluster,
        prefix,
        store,
        host,
        metrics: createMetrics({ defaultMetrics: false }),
        logger,
        concurrency: spec.concurrency,
        name: `${spec.name}-${i}`,
      }),
    );
  }
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  process.on("message", (m) => {
    if (m === "stats") {
      const cpu = process.cpuUsage(cpu0);
      const elu = performance.eventLoopUtilization(elu0);
      const stats: SimStats = {
        busySlotSeconds: hosts.reduce((s, h) => s + h.busySlotSeconds(), 0),
        eluActive: elu.active,
        eluIdle: elu.idle,
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        at: performance.now(),
      };
      process.send!(stats);
    }
  });
  process.send("ready");
}
