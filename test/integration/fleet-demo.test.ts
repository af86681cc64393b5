/**
 * `stagebeam demo` end to end, as `npm run demo` runs it: private redis-server, embedded S3,
 * two worker processes on the bundled model, the bundled sample; and its clean shutdown, also
 * on Ctrl-C.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
});
