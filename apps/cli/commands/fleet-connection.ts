/** Opening the fleet for the commands that talk to it: the queues, the run ledger and run states in Redis, the S3 store. */
import type { Config } from "../../../shared/io/config.ts";
import type { StagebeamMetrics } from "../../../shared/io/metrics.ts";
import { S3Store } from "../../../shared/io/storage/s3-store.ts";
import { RunLedger, RunRegistry } from "../../../workers/fleet/books/index.ts";
import { connectRedis, type FleetQueues, type FleetRedis, openQueues } from "../../../workers/fleet/protocol/index.ts";

export interface Fleet {
  queues: FleetQueues;
  redis: FleetRedis;
  ledger: RunLedger;
  runs: RunRegistry;
  store: S3Store;
  close(): Promise<void>;
}

/** Queues, the run ledger and the S3 store of a validated config. */
export function openFleet(config: Pick<Config, "redis" | "s3">, metrics?: StagebeamMetrics): Fleet {
  const queues = openQueues(config.redis, config.redis.queuePrefix);
  const redis = connectRedis(config.redis, { maxRetriesPerRequest: 3, lazyConnect: false });
  redis.on("error", () => {}); // surfaced by the commands that use it
  const ledger = new RunLedger(redis, config.redis.queuePrefix);
  const store = S3Store.fromConfig(config.s3, metrics ? { metrics } : {});
  return {
    queues,
    redis,
    ledger,
    runs: new RunRegistry(redis, config.redis.queuePrefix),
    store,
    close: async () => {
      await queues.close().catch(() => {});
      redis.disconnect();
      store.destroy();
    },
  };
}
