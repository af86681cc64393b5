/**
 * The fleet's connections to Redis: one server, or a Redis Cluster (REDIS_CLUSTER) found from
 * the node REDIS_URL names. Every key of a flow shares the queue prefix's hash tag, so on a
 * cluster one prefix lives on one node; several prefixes spread runs over the nodes.
 *
 * For one server BullMQ gets connection options and opens (and closes) its own connections,
 * as it always has. For a cluster it gets an ioredis Cluster, which BullMQ treats as shared:
 * its owner closes it (`close()`); a BullMQ worker duplicates it for its blocking connection.
 */
import type { ConnectionOptions } from "bullmq";
import { Cluster, Redis, type RedisOptions } from "ioredis";

export type FleetRedis = Redis | Cluster;

export interface RedisTarget {
  /** redis:// or rediss:// URL; for a cluster, any one of its nodes (with the credentials and TLS of all). */
  url: string;
  /** Treat `url` as a seed node of a Redis Cluster. */
  cluster?: boolean;
}

const asTarget = (target: string | RedisTarget): RedisTarget => (typeof target === "string" ? { url: target } : target);

/** The per-node options a URL carries (credentials, TLS), as ioredis reads them. */
function urlOptions(url: string): RedisOptions & { host: string; port: number } {
  const u = new URL(url);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port === "" ? 6379 : Number(u.port),
    ...(u.username !== "" ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password !== "" ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
  };
}

/** One client: a Redis for one server, a Cluster for a cluster. */
export function connectRedis(target: string | RedisTarget, options: RedisOptions = {}): FleetRedis {
  const { url, cluster } = asTarget(target);
  if (!cluster) return new Redis(url, options);
  const { host, port, ...auth } = urlOptions(url);
  return new Cluster([{ host, port }], {
    redisOptions: { ...auth, ...options },
    ...(options.lazyConnect !== undefined ? { lazyConnect: options.lazyConnect } : {}),
    ...(options.enableOfflineQueue !== undefined ? { enableOfflineQueue: options.enableOfflineQueue } : {}),
  });
}

export interface BullConnection {
  connection: ConnectionOptions;
  /** Closes what this module opened (nothing for one server: BullMQ closes its own). */
  close(): void;
}

/** The `connection` for BullMQ queues (or, `forWorker`, workers: retrying forever, as BullMQ requires). */
export function bullConnection(target: string | RedisTarget, forWorker = false): BullConnection {
  const { url, cluster } = asTarget(target);
  const retries = forWorker ? { maxRetriesPerRequest: null } : {};
  if (!cluster) return { connection: { url, ...retries }, close: () => {} };
  const client = connectRedis({ url, cluster }, retries);
  client.on("error", () => {}); // surfaced by BullMQ's own listeners and on use
  return { connection: client, close: () => client.disconnect() };
}
