/** The producer's checks, chunking and backpressure, and the status/record helpers, without servers. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/io/logging.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { parseSearchSettings } from "../../shared/core/search/settings.ts";
import { UsageError } from "../../shared/core/usage-error.ts";
import { estimateManifestSize } from "../../workers/fleet/feed/manifest-size.ts";
import { submitRun, type SubmitDeps } from "../../workers/fleet/feed/index.ts";
import { isCorrect, settingsDiff } from "../../workers/fleet/protocol/index.ts";
import { formatDuration } from "../../shared/core/duration.ts";
import { formatStatus, type RunStatus } from "../../workers/fleet/ops/index.ts";

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
const noDeps = {
  queues: { request: untouchable, feed: untouchable },
  store: untouchable,
  ledger: untouchable,
  runs: untouchable,
  logger,
} as unknown as SubmitDeps;
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
      [
        { run: "r", manifest: join(dir, "scenes"), question: "Q?", settings, detach: true },
        /only this machine can read: submit it without --detach/,
      ],
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
        workStartedAt: 500,
      },
      meta: null,
      finished: 8,
      pending: 2,
      done: false,
      throughput: 1,
      etaSeconds: 2,
      workers: 2,
      stalled: null,
      backlog: { waiting: 1, active: 1, waitingChildren: 0, delayed: 0 },
      accuracy: { correct: 4, graded: 6, rate: 4 / 6, ci95: [0.3, 0.9] },
      queues: { request: { waiting: 1, active: 1 } },
      at: new Date(0).toISOString(),
    };
    const text = formatStatus(s);
    expect(text).toContain("10 submitted · 6 completed · 2 failed · 2 pending");
    expect(text).toContain("1.00 items/s (last minute) · ETA 2s · 1234 tokens generated");
    expect(text).toContain("backlog    1 waiting · 1 active · 0 waiting for children · 0 delayed (this run's request jobs)");
    const idle = formatStatus({ ...s, throughput: null, etaSeconds: null, workers: 0, stalled: "no workers are taking jobs" });
    expect(idle).toContain("throughput — · ETA — · 1234 tokens generated  — no workers are taking jobs");
    expect(text).toContain("accuracy   4/6 = 66.7%");
    expect(text).toContain("manifest-image: 1");
    expect(text).toMatch(/request\s+waiting 1 · prioritized 0 · active 1/);
  });
});
