/**
 * The feeder's chunking, backpressure, abort and resume, de-duplication and bad-line limit,
 * over a real redis-server (the run's ledger and state), with stand-ins for the queue (to
 * watch the backlog) and S3 (to read what was written).
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedisServer, type RedisServer } from "../../apps/demo/services/redis-server.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import type { S3Store } from "../../shared/io/storage/s3-store.ts";
import { RunLedger, RunRegistry } from "../../workers/fleet/books/index.ts";
import { submitRun, type SubmitDeps, type SubmitProgress } from "../../workers/fleet/feed/index.ts";
import { RequestJobDataSchema } from "../../workers/fleet/protocol/index.ts";

const PREFIX = "{sb}";
const logger = createLogger({ level: "silent" });
const settings = { strategy: "stage", beam: 4, seed: 0, judgeMode: "score" };
let dir: string;
let redis: RedisServer;
let client: Redis;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sb-feeder-"));
  await writeSceneSet(join(dir, "scenes"), { count: 12, seed: 3 });
  redis = await startRedisServer();
  client = new Redis(redis.url);
});
afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

function memoryDeps(drainPerPoll: number) {
  const objects = new Map<string, unknown>();
  const added: { id: string; data: unknown }[] = [];
  let finished = 0;
  let maxSeen = 0;
  const backlog = () => added.length - finished;
  const deps: SubmitDeps = {
    logger,
    queues: {
      request: {
        getJobCounts: async () => {
          const b = backlog();
          maxSeen = Math.max(maxSeen, b);
          finished = Math.min(added.length, finished + drainPerPoll); // workers drain a little between polls
          return { waiting: b, prioritized: 0, delayed: 0, active: 0, "waiting-children": 0 };
        },
        addBulk: async (jobs: { opts: { jobId: string }; data: unknown }[]) => {
          for (const j of jobs) added.push({ id: j.opts.jobId, data: j.data });
          maxSeen = Math.max(maxSeen, backlog());
          return [];
        },
      },
    } as unknown as SubmitDeps["queues"],
    store: {
      getJson: async (k: string) => objects.get(k),
      putJson: async (k: string, v: unknown) => void objects.set(k, structuredClone(v)),
      putBytes: async (_b: Uint8Array, ext: string) => ({
        key: `images/sha256/x.${ext}`,
        uri: `s3://stagebeam/images/sha256/${"a".repeat(64)}.png`,
        uploaded: true,
      }),
    } as unknown as S3Store,
    ledger: new RunLedger(client, PREFIX),
    runs: new RunRegistry(client, PREFIX),
  };
  return { deps, objects, added, maxSeen: () => maxSeen };
}

describe("the feeder over a real Redis, with stand-in queues and S3", () => {
  it("keeps the backlog under its bound and enqueues in chunks", async () => {
    const m = memoryDeps(2);
    const progress: SubmitProgress[] = [];
    const summary = await submitRun(
      {
        run: "bp",
        manifest: join(dir, "scenes", "items.jsonl"),
        settings,
        maxBacklog: 5,
        chunkSize: 4,
        backlogPollMs: 1,
        onProgress: (p) => progress.push(p),
      },
      m.deps,
    );
    expect(summary).toMatchObject({ lines: 12, enqueued: 12, bad: 0, total: 12, interrupted: false });
    expect(m.maxSeen()).toBeLessThanOrEqual(5);
    expect(progress.some((p) => p.throttled)).toBe(true);
    expect(m.added.map((a) => a.id)).toEqual(Array.from({ length: 12 }, (_, i) => `bp/s3-${String(i).padStart(6, "0")}`));
    const data = RequestJobDataSchema.parse(m.added[0]!.data);
    expect(data.item).toMatchObject({ id: "s3-000000", key: "s3-000000", line: 1 });
    expect(JSON.stringify(m.added[0]!.data).length).toBeLessThan(2_000); // no image bytes, only a URI
    expect(m.objects.get("runs/bp/index/000000000.json")).toEqual({
      chunk: 0,
      entries: [1, 2, 3, 4].map((l) => [l, `s3-${String(l - 1).padStart(6, "0")}`, `s3-${String(l - 1).padStart(6, "0")}`]),
    });
    const runManifest = m.objects.get("runs/bp/manifest.json") as { settings: unknown; submits: unknown[] };
    expect(runManifest.settings).toMatchObject({ strategy: "stage", beam: 4 });
    expect(runManifest.submits).toEqual([expect.objectContaining({ enqueued: 12, lines: 12, interrupted: false })]);

    // Same submit again: nothing added, everything skipped.
    const again = await submitRun(
      { run: "bp", manifest: join(dir, "scenes", "items.jsonl"), settings, maxBacklog: 5, backlogPollMs: 1 },
      m.deps,
    );
    expect(again).toMatchObject({ enqueued: 0, skipped: 12, created: false });
    expect(m.added).toHaveLength(12);
  });

  it("stops after the chunk in flight when aborted, and resumes where it stopped", async () => {
    const m = memoryDeps(100);
    const abort = new AbortController();
    const first = await submitRun(
      {
        run: "ab",
        manifest: join(dir, "scenes", "items.jsonl"),
        settings,
        chunkSize: 5,
        signal: abort.signal,
        onProgress: (p) => {
          if (p.enqueued >= 5) abort.abort();
        },
      },
      m.deps,
    );
    expect(first).toMatchObject({ interrupted: true, enqueued: 5 });
    const second = await submitRun({ run: "ab", manifest: join(dir, "scenes", "items.jsonl"), settings, chunkSize: 5 }, m.deps);
    expect(second).toMatchObject({ interrupted: false, enqueued: 7, skipped: 0, resumedAt: 5 });
    expect(new Set(m.added.map((a) => a.id)).size).toBe(12);
    expect(m.added).toHaveLength(12);
  });

  it("reports duplicate ids and records bad lines once", async () => {
    const m = memoryDeps(100);
    const scenes = join(dir, "scenes");
    await mkdir(join(dir, "dup"), { recursive: true });
    const lines = [
      JSON.stringify({ id: "a", image: join(scenes, "s3-000000.png"), question: "Q?" }),
      JSON.stringify({ id: "a", image: join(scenes, "s3-000001.png"), question: "Q?" }),
      JSON.stringify({ id: "b", image: join(scenes, "s3-000001.png") }),
    ];
    await writeFile(join(dir, "dup", "m.jsonl"), lines.join("\n"));
    const dups: unknown[] = [];
    const bad: unknown[] = [];
    const opts = {
      run: "dup",
      manifest: join(dir, "dup", "m.jsonl"),
      imageRoot: dir,
      settings,
      onDuplicate: (d: unknown) => dups.push(d),
      onBadLine: (b: unknown) => bad.push(b),
    };
    expect(await submitRun(opts, m.deps)).toMatchObject({ enqueued: 1, duplicates: 1, bad: 1 });
    expect(dups).toEqual([{ line: 2, id: "a", firstLine: 1 }]);
    expect(bad).toEqual([expect.objectContaining({ line: 3, id: "b", reason: "manifest-question", field: "question" })]);
    expect(m.objects.get("runs/dup/failed/b.json")).toMatchObject({
      kind: "failure",
      stage: "submit",
      line: 3,
      reason: "manifest-question",
    });
    expect(await m.deps.ledger.outcomeOf("dup", "b")).toBe("b:manifest-question");
    // The duplicate line has its own failure record, apart from the first line's item.
    expect(m.objects.get("runs/dup/failed/dup-line~2.json")).toMatchObject({
      kind: "failure",
      stage: "submit",
      line: 2,
      id: "a",
      reason: "duplicate-id",
      field: "id",
      message: 'id "a" is already used by line 1; expected an id unique within the run',
    });
    expect(await m.deps.ledger.outcomeOf("dup", "dup-line~2")).toBe("b:duplicate-id");
    bad.length = 0;
    expect(await submitRun(opts, m.deps)).toMatchObject({ enqueued: 0, skipped: 1, duplicates: 1, bad: 1 });
    // The refused line is looked at again (it may have been fixed) and counted once in the run.
    expect(bad).toEqual([expect.objectContaining({ line: 3, reason: "manifest-question" })]);
    // Each line once: the item, the bad line and the duplicate line (failed for its reason).
    expect(await m.deps.ledger.counts("dup")).toMatchObject({
      items: 3,
      failed: 2,
      failedByReason: { "manifest-question": 1, "duplicate-id": 1 },
    });
  });
});

describe("bad input at run level", () => {
  it("stops a run over --max-bad-lines in state failed, with the reason", async () => {
    const m = memoryDeps(100);
    const scenes = join(dir, "scenes");
    const lines = Array.from({ length: 10 }, (_, i) =>
      JSON.stringify(
        i % 3 === 0
          ? { id: `x${i}`, image: join(scenes, "s3-000000.png") }
          : { id: `x${i}`, image: join(scenes, "s3-000001.png"), question: "Q?" },
      ),
    );
    await writeFile(join(dir, "limit.jsonl"), lines.join("\n"));
    const s = await submitRun(
      { run: "limit", manifest: join(dir, "limit.jsonl"), settings, chunkSize: 2, maxBadLines: { lines: 2 } },
      m.deps,
    );
    expect(s).toMatchObject({ state: "failed", reason: "too many bad lines: 3 of 8 read, over the limit of 2 lines" });
    expect(await m.deps.runs.get("limit")).toMatchObject({ state: "failed", cursor: 8 });
    expect(m.objects.get("runs/limit/manifest.json")).toMatchObject({ state: "failed" });
  });

  it("fails a run whose CSV header is wrong, or of which nothing could be enqueued, without a fake item", async () => {
    const m = memoryDeps(100);
    await writeFile(join(dir, "h.csv"), "id,picture,question\na,x.png,Q\n");
    const h = await submitRun({ run: "header", manifest: join(dir, "h.csv"), settings }, m.deps);
    expect(h).toMatchObject({ state: "failed", enqueued: 0, bad: 0 });
    expect(h.reason).toMatch(/^line 1, header: missing column image in header "id,picture,question"/);
    expect((await m.deps.ledger.counts("header")).items).toBe(0);
    await writeFile(join(dir, "none.jsonl"), `${JSON.stringify({ id: "a" })}\n${JSON.stringify({ id: "b" })}\n`);
    const none = await submitRun({ run: "none", manifest: join(dir, "none.jsonl"), settings }, m.deps);
    expect(none).toMatchObject({ state: "failed", reason: "no line of the manifest could be enqueued (2 bad)", bad: 2 });
  });

  it("looks again at lines refused before: a fixed line is enqueued on the next submit", async () => {
    const m = memoryDeps(100);
    const scenes = join(dir, "scenes");
    const good = { id: "g", image: join(scenes, "s3-000000.png"), question: "Q?" };
    await writeFile(
      join(dir, "fix.jsonl"),
      `${JSON.stringify(good)}\n${JSON.stringify({ id: "f", image: join(scenes, "s3-000001.png") })}`,
    );
    const first = await submitRun({ run: "fix", manifest: join(dir, "fix.jsonl"), settings }, m.deps);
    expect(first).toMatchObject({ enqueued: 1, bad: 1 });
    await writeFile(
      join(dir, "fix.jsonl"),
      `${JSON.stringify(good)}\n${JSON.stringify({ id: "f", image: join(scenes, "s3-000001.png"), question: "Q?" })}`,
    );
    const second = await submitRun({ run: "fix", manifest: join(dir, "fix.jsonl"), settings }, m.deps);
    expect(second).toMatchObject({ enqueued: 1, skipped: 1, bad: 0 });
    expect(await m.deps.ledger.counts("fix")).toMatchObject({ items: 2, failed: 0 });
    expect(m.added.map((a) => a.id)).toEqual(["fix/g", "fix/f"]);
  });
});
