/**
 * A real Redis Cluster on loopback for benchmarks: `nodes` redis-server processes with
 * `--cluster-enabled yes` (startRedisServer: AOF, noeviction, each its own dir), joined by
 * `redis-cli --cluster create … --cluster-replicas 0`, ready once every node reports
 * cluster_state:ok. `tagsPerNode` finds hash tags whose slots each node owns, so that queue
 * prefixes can be spread over the nodes on purpose.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { startRedisServer, type RedisServer } from "../../apps/demo/services/redis-server.ts";

const run = promisify(execFile);

export interface RedisCluster {
  nodes: RedisServer[];
  /** A seed node's URL (REDIS_URL with REDIS_CLUSTER=true). */
  url: string;
  /** For each node, in order, `count` hash tags (without braces) whose slot it serves. */
  tagsPerNode(count: number): Promise<string[][]>;
  stop(): Promise<void>;
}

export async function startRedisCluster(nodes = 3): Promise<RedisCluster> {
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < nodes; i++) {
      servers.push(
        await startRedisServer({
          extraArgs: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"],
        }),
      );
    }
    await run("redis-cli", [
      "--cluster",
      "create",
      ...servers.map((s) => `${s.host}:${s.port}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    const clients = servers.map((s) => new Redis(s.url, { maxRetriesPerRequest: 1 }));
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const infos = await Promise.all(clients.map((c) => c.cluster("INFO") as Promise<string>));
        if (infos.every((t) => t.includes("cluster_state:ok"))) break;
        if (Date.now() > deadline) throw new Error(`the Redis Cluster did not become ready:\n${infos.join("\n")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      for (const c of clients) c.disconnect();
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }

  return {
    nodes: servers,
    url: servers[0]!.url,
    async tagsPerNode(count) {
      const client = new Redis(servers[0]!.url);
      try {
        const ranges = await client.cluster("SLOTS");
        const owner = (slot: number) => {
          const [, , primary] = ranges.find(([a, b]) => slot >= a && slot <= b)!;
          return servers.findIndex((s) => s.port === primary![1]);
        };
        const tags: string[][] = servers.map(() => []);
        for (let i = 0; tags.some((t) => t.length < count); i++) {
          const tag = `sb${i}`;
          const node = owner((await client.cluster("KEYSLOT", `{${tag}}`)) as number);
          if (tags[node]!.length < count) tags[node]!.push(tag);
        }
        return tags;
      } finally {
        client.disconnect();
      }
    },
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}
