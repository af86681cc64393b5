import { Cluster, Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/io/config.ts";
import { bullConnection, connectRedis } from "../../workers/fleet/protocol/index.ts";

describe("fleet Redis connections", () => {
  it("opens one server as a Redis, with the URL's settings", () => {
    const client = connectRedis("redis://:pw@127.0.0.1:6390", { lazyConnect: true, maxRetriesPerRequest: 2 });
    try {
      expect(client).toBeInstanceOf(Redis);
      expect(client.options).toMatchObject({ host: "127.0.0.1", port: 6390, password: "pw", maxRetriesPerRequest: 2 });
    } finally {
      client.disconnect();
    }
  });

  it("opens a cluster from one seed node, each node with the URL's credentials and TLS", () => {
    const client = connectRedis(
      { url: "rediss://user:p%2Fw@10.0.0.5:7001", cluster: true },
      { lazyConnect: true, maxRetriesPerRequest: null },
    );
    try {
      expect(client).toBeInstanceOf(Cluster);
      const cluster = client as Cluster;
      expect((cluster as unknown as { startupNodes: unknown }).startupNodes).toEqual([{ host: "10.0.0.5", port: 7001 }]);
      expect(cluster.options.lazyConnect).toBe(true);
      expect(cluster.options.redisOptions).toMatchObject({
        username: "user",
        password: "p/w",
        tls: {},
        maxRetriesPerRequest: null,
      });
    } finally {
      client.disconnect();
    }
  });

  it("gives BullMQ options for one server and a Cluster it shares for a cluster", () => {
    const single = bullConnection("redis://127.0.0.1:6390", true);
    expect(single.connection).toEqual({ url: "redis://127.0.0.1:6390", maxRetriesPerRequest: null });
    single.close();
    const cluster = bullConnection({ url: "redis://127.0.0.1:1", cluster: true }, true);
    try {
      expect(cluster.connection).toBeInstanceOf(Cluster);
      expect((cluster.connection as Cluster).options.redisOptions?.maxRetriesPerRequest).toBeNull();
    } finally {
      cluster.close();
    }
    expect((cluster.connection as Cluster).status).toMatch(/^(disconnecting|end)$/);
  });

  it("reads REDIS_CLUSTER into the Redis config (off unless set)", () => {
    const base = { REDIS_URL: "redis://127.0.0.1:7000" };
    expect(loadConfig(base, ["redis"]).redis.cluster).toBe(false);
    expect(loadConfig({ ...base, REDIS_CLUSTER: "yes" }, ["redis"]).redis.cluster).toBe(true);
    expect(() => loadConfig({ ...base, REDIS_CLUSTER: "sometimes" }, ["redis"])).toThrow(/REDIS_CLUSTER/);
  });
});
