/**
 * `stagebeam demo` end to end, as `npm run demo` runs it: private redis-server, embedded S3,
 * two worker processes on the bundled model, the bundled sample; and its clean shutdown, also
 * on Ctrl-C.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { runCli, startCli } from "../support/cli.ts";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sb-demo-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const reachable = async (url: string) => {
  try {
    await fetch(url);
    return true;
  } catch {
    return false;
  }
};

describe("stagebeam demo", () => {
  it("runs the sample through two workers, prints the table, where the results are and the metrics, and cleans up", async () => {
    const r = await runCli(["demo", "--data-dir", join(dir, "a")]);
    expect(r.code, r.stderr).toBe(0);
    const rows = r.stdout.split("\n").filter((l) => /^\d+\s{2}/.test(l));
    expect(rows).toHaveLength(20);
    expect(r.stdout).toMatch(/^#\s+question\s+answer\s+gold\s+correct$/m);
    expect(r.stdout).toMatch(/20 answered, 0 failed · accuracy \d+\/20/);
    const run = /results in S3: {4}s3:\/\/stagebeam\/runs\/(demo-[0-9-]+)\/results\//.exec(r.stdout)?.[1];
    expect(run).toBeDefined();
    const metricsLines = r.stdout
      .split("\n")
      .filter((l) => /^ {2}worker \d http:\/\/127\.0\.0\.1:\d+\/metrics: \d+ items completed/.test(l));
    expect(metricsLines).toHaveLength(2);
    const completed = metricsLines.map((l) => Number(/: (\d+) items completed/.exec(l)![1]));
    expect(completed.reduce((a, b) => a + b, 0)).toBe(20);
    expect(r.stdout).toMatch(/producer http:\/\/127\.0\.0\.1:\d+\/metrics/);
    const copy = (await readFile(join(dir, "a", run!, "results.jsonl"), "utf8")).trim().split("\n");
    expect(copy).toHaveLength(20);
    expect(r.stderr).toMatch(/shutting down: workers \(SIGTERM\), S3 server, redis-server …\ndone\./);
    for (const url of r.stdout.match(/http:\/\/127\.0\.0\.1:\d+\/metrics/g) ?? []) expect(await reachable(url)).toBe(false);
  });

  it("shuts everything down on Ctrl-C", async () => {
    const demo = startCli(["demo", "--data-dir", join(dir, "b")]);
    await demo.waitFor(/run demo-[0-9-]+: 20 items enqueued/, 60_000);
    await demo.waitFor(/producer: http/, 1_000);
    demo.child.kill("SIGINT");
    const r = await demo.done;
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/interrupted: shutting everything down/);
    expect(r.stderr).toMatch(/shutting down: workers/);
    const urls = r.stderr.match(/http:\/\/127\.0\.0\.1:\d+\/metrics/g) ?? [];
    expect(urls.length).toBe(3);
    for (const url of urls) expect(await reachable(url)).toBe(false);
  });

  it("with --keep, keeps the fleet serving other commands until Ctrl-C, then exits 0", async () => {
    const sample = join(dir, "c-sample");
    await writeSceneSet(sample, { count: 2, seed: 5 });
    const demo = startCli(["demo", "--keep", "--workers", "1", "--sample", sample, "--data-dir", join(dir, "c")]);
    await demo.waitFor(/the fleet keeps running[\s\S]*producer: http\S+\n/, 120_000);
    const printed = demo.output().stdout;
    expect(printed).toMatch(/2 answered, 0 failed/);
    const env = Object.fromEntries([...printed.matchAll(/^ {2}export ([A-Z0-9_]+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
    expect(Object.keys(env).sort()).toEqual(
      [
        "QUEUE_PREFIX",
        "REDIS_URL",
        "S3_ACCESS_KEY_ID",
        "S3_BUCKET",
        "S3_ENDPOINT",
        "S3_FORCE_PATH_STYLE",
        "S3_REGION",
        "S3_SECRET_ACCESS_KEY",
      ].sort(),
    );
    const more = await runCli(
      ["submit", "--run", "after-demo", "--manifest", join(sample, "items.jsonl"), "--wait", "--no-progress"],
      env,
    );
    expect(more.code, more.stderr).toBe(0);
    expect(more.stdout).toContain("items      2 submitted · 2 completed · 0 failed · 0 pending  — done");
    const urls = printed.match(/http:\/\/127\.0\.0\.1:\d+\/metrics/g) ?? [];
    expect(urls.length).toBeGreaterThanOrEqual(2);
    for (const url of urls) expect(await reachable(url)).toBe(true);

    demo.child.kill("SIGINT");
    const r = await demo.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/stopping: shutting everything down/);
    for (const url of urls) expect(await reachable(url)).toBe(false);
  });
});
