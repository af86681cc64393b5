/**
 * Real servers: a private redis-server child process and an embedded s3rver, driven through
 * the modules the fleet builds on; /metrics scraped over HTTP.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toItemId } from "../../shared/core/ids.ts";
import { loadConfig } from "../../shared/io/config.ts";
import { createMetrics, serveMetrics } from "../../shared/io/metrics.ts";
import { Readiness } from "../../shared/io/readiness.ts";
import { startRedisServer, type RedisServer } from "../../apps/demo/services/redis-server.ts";
import { startS3Server, type S3Server } from "../../apps/demo/services/s3-server.ts";
import { S3Store, manifestKey, resultKey, resultsPrefix } from "../../shared/io/storage/s3-store.ts";

describe("redis-server service", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it("answers PING/SET/GET with AOF on and noeviction", async () => {
    const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    try {
      expect(await client.ping()).toBe("PONG");
      expect(await client.set("k", "v")).toBe("OK");
      expect(await client.get("k")).toBe("v");
      expect(await client.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
      expect(await client.config("GET", "maxmemory-policy")).toEqual(["maxmemory-policy", "noeviction"]);
      expect(await client.config("GET", "save")).toEqual(["save", ""]);
      expect(await client.config("GET", "bind")).toEqual(["bind", "127.0.0.1"]);
    } finally {
      client.disconnect();
    }
  });

  it("stop() ends the process and removes its own temp dir", async () => {
    const r = await startRedisServer();
    await r.stop();
    await r.stop(); // idempotent
    expect(() => process.kill(r.pid, 0)).toThrow();
    await expect(stat(r.dir)).rejects.toThrow();
  });

  it("keeps data across a restart on the same dir (AOF), even after a crash", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sb-redis-keep-"));
    try {
      const first = await startRedisServer({ dir });
      const c1 = new Redis(first.url, { maxRetriesPerRequest: 1 });
      await c1.set("durable", "yes");
      c1.disconnect();
      await first.stop();
      const second = await startRedisServer({ dir, port: first.port });
      expect(second.url).toBe(first.url);
      const c2 = new Redis(second.url, { maxRetriesPerRequest: 1 });
      expect(await c2.get("durable")).toBe("yes");
      await c2.set("after-crash", "1");
      // appendfsync everysec: give it a moment before the SIGKILL
      await new Promise((r) => setTimeout(r, 1200));
      c2.disconnect();
      await second.kill();
      const third = await startRedisServer({ dir });
      const c3 = new Redis(third.url, { maxRetriesPerRequest: 1 });
      expect(await c3.mget("durable", "after-crash")).toEqual(["yes", "1"]);
      c3.disconnect();
      await third.stop();
      await stat(dir); // a caller's dir is kept
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("explains a start failure", async () => {
    await expect(startRedisServer({ bin: "redis-server-that-does-not-exist" })).rejects.toThrow(
      /not found on PATH; install it with scripts\/ensure-system-deps.sh/,
    );
    await expect(startRedisServer({ port: redis.port })).rejects.toThrow(/exited during start[\s\S]*in use/);
  });
});

describe("S3 store over s3rver", () => {
  let s3: S3Server;
  let store: S3Store;
  const metrics = createMetrics({ defaultMetrics: false });

  beforeAll(async () => {
    s3 = await startS3Server({ bucket: "stagebeam-test" });
    // The env the server hands out is what a worker process would be started with.
    const cfg = loadConfig(s3.env, ["s3"]);
    expect(cfg.s3).toEqual(s3.config);
    store = S3Store.fromConfig(cfg.s3, { metrics });
  });
  afterAll(async () => {
    store?.destroy();
    await s3?.stop();
  });

  it("round-trips JSON and answers exists", async () => {
    const key = resultKey("run-1", toItemId("item one/α"));
    const value = { id: "item one/α", stages: { CONCLUSION: "3" }, tokens: 12 };
    expect(await store.exists(key)).toBe(false);
    expect(await store.getJson(key)).toBeUndefined();
    await store.putJson(key, value);
    expect(await store.exists(key)).toBe(true);
    expect(await store.getJson(key)).toEqual(value);
    // typed read through a schema
    const parsed = await store.getJson(key, { parse: (v) => v as typeof value });
    expect(parsed?.tokens).toBe(12);
    await store.putJson(key, { ...value, tokens: 13 }); // overwrite
    expect(await store.getJson(key)).toMatchObject({ tokens: 13 });
  });

  it("answers a ping (HeadBucket) for its bucket, and fails one for a bucket that is not there", async () => {
    await store.ping();
    const missing = S3Store.fromConfig({ ...s3.config, bucket: "no-such-bucket" });
    try {
      await expect(missing.ping()).rejects.toThrow();
    } finally {
      missing.destroy();
    }
  });

  it("lists a prefix across pages, in key order", async () => {
    const ids = Array.from({ length: 7 }, (_, i) => `p${i}`);
    await Promise.all(ids.map((id) => store.putJson(resultKey("run-list", id), { id })));
    await store.putJson(manifestKey("run-list"), { items: 7 });
    const listed: string[] = [];
    for await (const o of store.list(resultsPrefix("run-list"), 3)) {
      listed.push(o.key);
      expect(o.size).toBeGreaterThan(0);
    }
    expect(listed).toEqual(ids.map((id) => resultKey("run-list", id)));
    const empty: string[] = [];
    for await (const o of store.list("runs/none/")) empty.push(o.key);
    expect(empty).toEqual([]);
  });

  it("stages images by content hash and skips a second upload", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sb-img-"));
    try {
      const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4]);
      await writeFile(join(dir, "a.PNG"), png);
      const first = await store.putFile(join(dir, "a.PNG"));
      expect(first.key).toMatch(/^images\/sha256\/[0-9a-f]{64}\.png$/);
      expect(first).toMatchObject({ uploaded: true, size: 8, uri: `s3://stagebeam-test/${first.key}` });
      const again = await store.putBytes(await readFile(join(dir, "a.PNG")), "png");
      expect(again).toEqual({ ...first, uploaded: false });
      expect(Buffer.from((await store.getBytes(first.key))!)).toEqual(png);
      expect(await store.getBytes("images/sha256/missing.png")).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("times requests into metrics; 404s are not errors", async () => {
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/stagebeam_s3_request_seconds_count\{op="PutObject"\} \d+/);
    expect(text).toMatch(/stagebeam_s3_request_seconds_count\{op="HeadObject"\} \d+/);
    expect(text).toMatch(/stagebeam_s3_request_seconds_count\{op="ListObjectsV2"\} \d+/);
    expect(text).toContain('stagebeam_s3_errors_total{op="PutObject"} 0');
  });

  it("survives an outage: errors are counted and reported, and it works again after a restart", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sb-s3-keep-"));
    const local = await startS3Server({ dir, bucket: "outage" });
    const m = createMetrics({ defaultMetrics: false });
    const st = S3Store.fromConfig(local.config, { metrics: m, client: { maxAttempts: 1 } });
    try {
      await st.putJson("k.json", { n: 1 });
      await local.stop();
      await expect(st.getJson("k.json")).rejects.toThrow(/S3 GetObject k.json failed/);
      await expect(st.putJson("k2.json", {})).rejects.toThrow(/S3 PutObject k2.json failed/);
      const text = await m.registry.metrics();
      expect(text).toContain('stagebeam_s3_errors_total{op="GetObject"} 1');
      expect(text).toContain('stagebeam_s3_errors_total{op="PutObject"} 1');
      const back = await startS3Server({ dir, bucket: "outage", port: local.port });
      expect(await st.getJson("k.json")).toEqual({ n: 1 });
      await back.stop();
    } finally {
      st.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("/metrics over HTTP", () => {
  it("serves the registry, liveness, readiness, and 404 elsewhere", async () => {
    const m = createMetrics();
    m.itemsCompleted.inc(2);
    const srv = await serveMetrics(m.registry, 0, "127.0.0.1");
    try {
      expect(srv.port).toBeGreaterThan(0);
      const res = await fetch(`http://127.0.0.1:${srv.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain");
      const body = await res.text();
      expect(body).toContain("stagebeam_items_completed_total 2");
      expect(body).toContain("process_resident_memory_bytes");
      expect((await fetch(`http://127.0.0.1:${srv.port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${srv.port}/readyz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${srv.port}/nope`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${srv.port}/metrics`, { method: "POST" })).status).toBe(405);
    } finally {
      await srv.close();
    }
  });

  it("answers /readyz 503 naming the failing check while /healthz stays 200", async () => {
    let redisUp = false;
    const readiness = new Readiness(
      {
        model: () => {},
        redis: () => {
          if (!redisUp) throw new Error("connect ECONNREFUSED");
        },
      },
      { ttlMs: 0 },
    );
    const m = createMetrics({ defaultMetrics: false });
    const srv = await serveMetrics(m.registry, 0, "127.0.0.1", { readiness });
    try {
      const notReady = await fetch(`http://127.0.0.1:${srv.port}/readyz`);
      expect(notReady.status).toBe(503);
      expect(await notReady.text()).toBe("not ready\nmodel ok\nredis failed: connect ECONNREFUSED\n");
      expect((await fetch(`http://127.0.0.1:${srv.port}/healthz`)).status).toBe(200);
      redisUp = true;
      const ready = await fetch(`http://127.0.0.1:${srv.port}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.text()).toBe("ready\nmodel ok\nredis ok\n");
    } finally {
      await srv.close();
    }
  });
});
