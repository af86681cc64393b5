/**
 * A fleet on real servers for integration tests: a private redis-server, an embedded S3
 * server, the queues, the run ledger, and in-process fleet workers over a given model host.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics, type StagebeamMetrics } from "../../shared/io/metrics.ts";
import { startRedisServer, type RedisServer, type RedisServerOptions } from "../../apps/demo/services/redis-server.ts";
import { startS3Server, type S3Server, type S3ServerOptions } from "../../apps/demo/services/s3-server.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { RunLedger, RunRegistry } from "../../workers/fleet/books/index.ts";
import { type FleetQueues, type ModelHost, openQueues, type VerifierHost } from "../../workers/fleet/protocol/index.ts";
import { startFleetWorker, type FleetWorker } from "../../workers/fleet/worker/index.ts";

export const PREFIX = "{sb}";

export interface FleetEnv {
  redis: RedisServer;
  s3: S3Server;
  store: S3Store;
  queues: FleetQueues;
  client: Redis;
  ledger: RunLedger;
  runs: RunRegistry;
  /** The queue prefix (for the export's checkpoints). */
  prefix: string;
  tmp: string;
  /** REDIS_URL, QUEUE_PREFIX and S3_* for child processes. */
  env: Record<string, string>;
  /** A worker over the policy `host` (null: none) and, when given, a verifier. */
  startWorker(
    host: ModelHost | null,
    opts?: { concurrency?: number; name?: string; metrics?: StagebeamMetrics; lockDurationMs?: number; verifier?: VerifierHost },
  ): Promise<{ worker: FleetWorker; metrics: StagebeamMetrics }>;
  close(): Promise<void>;
}

export interface FleetEnvOptions {
  /** For the redis-server (a password, a data dir to restart it on, extra arguments). */
  redis?: RedisServerOptions;
  s3?: S3ServerOptions;
}

export async function startFleetEnv(opts: FleetEnvOptions = {}): Promise<FleetEnv> {
  const redis = await startRedisServer(opts.redis);
  const s3 = await startS3Server(opts.s3);
  const store = S3Store.fromConfig(s3.config);
  const queues = openQueues(redis.url, PREFIX);
  const client = new Redis(redis.url, { maxRetriesPerRequest: 3 });
  const ledger = new RunLedger(client, PREFIX);
  const tmp = await mkdtemp(join(tmpdir(), "sb-fleet-"));
  const workers: FleetWorker[] = [];
  const logger = createLogger({ level: "silent" });
  return {
    redis,
    s3,
    store,
    queues,
    client,
    ledger,
    runs: new RunRegistry(client, PREFIX),
    prefix: PREFIX,
    tmp,
    env: { REDIS_URL: redis.url, QUEUE_PREFIX: PREFIX, ...s3.env },
    async startWorker(host, opts = {}) {
      const metrics = opts.metrics ?? createMetrics({ defaultMetrics: false });
      const worker = await startFleetWorker({
        redisUrl: redis.url,
        prefix: PREFIX,
        store,
        host,
        ...(opts.verifier !== undefined ? { verifier: opts.verifier } : {}),
        metrics,
        logger,
        concurrency: opts.concurrency ?? 4,
        ...(opts.name !== undefined ? { name: opts.name } : {}),
        ...(opts.lockDurationMs !== undefined ? { lockDurationMs: opts.lockDurationMs } : {}),
      });
      workers.push(worker);
      return { worker, metrics };
    },
    async close() {
      await Promise.all(workers.map((w) => w.stop({ graceMs: 2_000 })));
      await queues.close();
      client.disconnect();
      store.destroy();
      await s3.stop();
      await redis.stop();
      await rm(tmp, { recursive: true, force: true });
    },
  };
}
