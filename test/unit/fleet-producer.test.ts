/** The producer's checks, chunking and backpressure, and the status/record helpers, without servers. */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/io/logging.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import type { S3Store } from "../../shared/io/storage/s3-store.ts";
import { parseSearchSettings } from "../../shared/core/search/settings.ts";
import { UsageError } from "../../shared/core/usage-error.ts";
import type { RunLedger } from "../../workers/fleet/ledger.ts";
import { estimateManifestSize } from "../../workers/fleet/manifest-size.ts";
import { submitRun, type SubmitDeps, type SubmitProgress } from "../../workers/fleet/producer.ts";
import { RequestJobDataSchema } from "../../workers/fleet/protocol.ts";
import { isCorrect, settingsDiff } from "../../workers/fleet/records.ts";
import { formatDuration } from "../../shared/core/duration.ts";
import { formatStatus, type RunStatus } from "../../workers/fleet/status.ts";

const logger = createLogger({ level: "silent" });
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sb-producer-"));
  await writeSceneSet(join(dir, "scenes"), { count: 12, seed: 3 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every dependency throws: nothing may be touched. */
const untouchable = new Proxy(
  {},
  {
    get: (_t, p) => {
      if (p === "then") return undefined;
      throw new Error(`touched ${String(p)}`);
    },
  },
);
const noDeps = { queues: { request: untouchable }, store: untouchable, ledger: untouchable, logger } as unknown as SubmitDeps;
const settings = { strategy: "stage", beam: 4, seed: 0, judgeMode: "score" };

describe("submit settings", () => {
  it("fails bad usage before it touches Redis, S3 or the queues", async () => {
    const manifest = join(dir, "scenes", "items.jsonl");
    const cases: [Parameters<typeof submitRun>[0], RegExp][] = [
      [{ run: "r", manifest, settings: { ...settings, strategy: "nope" } }, /strategy must be one of/],
      [{ run: "r", manifest, settings: { ...settings, beam: 0 } }, /beam must be an integer >= 1/],
      [{ run: "bad name", manifest, settings }, /invalid run id "bad name"/],
      [{ run: "r", manifest: join(dir, "nope.jsonl"), settings }, /manifest not found/],
      [{ run: "r", manifest: join(dir, "scenes"), settings }, /is a folder of images: give the question/],
      [{ run: "r", manifest: join(dir, "scenes", "s3-000000.png"), settings }, /cannot tell the format/],
      [{ run: "r", manifest, settings, maxBacklog: 0 }, /max backlog must be an integer >= 1/],
      [{ run: "r", manifest, settings, imageRoot: join(dir, "nowhere") }, /image root .* is not a folder/],
    ];
    for (const [opts, message] of cases) {
      const err = await submitRun(opts, noDeps).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toMatch(message);
    }
  });

  it("estimates a manifest's size for progress", async () => {
    expect(await estimateManifestSize(join(dir, "scenes", "items.jsonl"))).toBe(12);
    expect(await estimateManifestSize(join(dir, "scenes"))).toBe(12);
    await writeFile(join(dir, "m.csv"), "id,image,question\na,x.png,Q\nb,y.png,Q");
    expect(await estimateManifestSize(join(dir, "m.csv"))).toBe(2);
    expect(await estimateManifestSize(join(dir, "missing.jsonl"))).toBeNull();
  });
});

describe("submit with in-memory stand-ins", () => {
  function memoryDeps(drainPerPoll: number) {
    const objects = new Map<string, unknown>();
    const items = new Map<string, number>();
    const outcomes = new Map<string, string>();
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
      ledger: {
        submittedLines: async (_run: string, keys: string[]) => keys.map((k) => items.get(k) ?? null),
        markSubmitted: async (_run: string, entries: [string, number][]) => {
          for (const [k, l] of entries) items.set(k, l);
        },
        markCreated: async () => {},
        recordOutcome: async (_run: string, k: string, o: string) => {
          outcomes.set(k, o);
          return true;
        },
      } as unknown as RunLedger,
    };
    return { deps, objects, items, outcomes, added, maxSeen: () => maxSeen };
  }

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
    expect(second).toMatchObject({ interrupted: false, enqueued: 7, skipped: 5 });
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
    expect(m.outcomes.get("b")).toBe("f:manifest-question");
    bad.length = 0;
    expect(await submitRun(opts, m.deps)).toMatchObject({ enqueued: 0, skipped: 2, duplicates: 1, bad: 0 });
    expect(bad).toEqual([]);
  });
});

describe("status and records", () => {
  it("grades answers leniently and only with a gold answer", () => {
    expect(isCorrect("B", "B")).toBe(true);
    expect(isCorrect(" yes. ", "Yes")).toBe(true);
    expect(isCorrect("3", "4")).toBe(false);
    expect(isCorrect(null, "4")).toBe(false);
    expect(isCorrect("3", null)).toBeNull();
  });

  it("names the settings that differ", () => {
    const a = parseSearchSettings(settings);
    expect(settingsDiff(a, { ...a, beam: 2, seed: 1 })).toEqual(["beam: 4 ≠ 2", "seed: 0 ≠ 1"]);
  });

  it("formats durations and a status", () => {
    expect(formatDuration(5.4)).toBe("5s");
    expect(formatDuration(125)).toBe("2m05s");
    expect(formatDuration(3_700)).toBe("1h01m");
    const s: RunStatus = {
      run: "r",
      manifest: null,
      counts: {
        items: 10,
        completed: 6,
        correct: 4,
        wrong: 2,
        failed: 2,
        failedByReason: { "manifest-image": 1, "image-unreadable": 1 },
        tokens: 1234,
        createdAt: 0,
        firstAt: 1000,
        lastAt: 8000,
      },
      finished: 8,
      pending: 2,
      done: false,
      throughput: 1,
      etaSeconds: 2,
      accuracy: { correct: 4, graded: 6, rate: 4 / 6, ci95: [0.3, 0.9] },
      queues: { request: { waiting: 1, active: 1 } },
      at: new Date(0).toISOString(),
    };
    const text = formatStatus(s);
    expect(text).toContain("10 submitted · 6 completed · 2 failed · 2 pending");
    expect(text).toContain("1.00 items/s · ETA 2s · 1234 tokens generated");
    expect(text).toContain("accuracy   4/6 = 66.7%");
    expect(text).toContain("manifest-image: 1");
    expect(text).toMatch(/request\s+waiting 1 · prioritized 0 · active 1/);
  });
});
