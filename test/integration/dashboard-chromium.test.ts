/**
 * `stagebeam dashboard` in real Chromium against a real run: redis-server, the embedded S3 and
 * an in-process worker on the bundled model. The runs page with each run's true state (a run
 * with failures, a cancelled run, a failed run), a run's items and failures paged (two a page)
 * and searched by id, a result's viewer (image, stages, candidate trees with their verdicts), a
 * failure's reason, bull-board, and the token-guarded actions; no page asks anything of another
 * origin. Screenshots and the pages' weight and load time go to test-artifacts/dashboard/.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../apps/demo/services/worker-processes.ts";
import { startDashboard, type Dashboard } from "../../apps/dashboard/server.ts";
import type { DashboardReady } from "../../apps/cli/commands/dashboard.ts";
import { loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { createMetrics } from "../../shared/io/metrics.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { createModelHost } from "../../workers/fleet/worker/index.ts";
import { type FailureRecord, type ModelHost, requestJobId, type ResultRecord } from "../../workers/fleet/protocol/index.ts";
import { submitRun } from "../../workers/fleet/feed/index.ts";
import { cancelRun, streamRecords, waitForRun } from "../../workers/fleet/ops/index.ts";
import { startCli, type CliRun } from "../support/cli.ts";
import { startFleetEnv, type FleetEnv } from "../support/fleet-env.ts";

const ARTIFACTS = join(REPO_ROOT, "test-artifacts/dashboard");
const RUN = "dash-1";
/** Cancelled right after it was submitted. */
const CANCELLED = "dash-cancelled";
/** Over its --max-bad-lines of 0 at its first line. */
const FAILED = "dash-failed";
/** Items and failure records on one page of the guarded dashboard: fewer than the run has. */
const PAGE_SIZE = 2;
const TOKEN = "test-token-0123456789abcdef";
/** User text that would be markup if it were not escaped. */
const HOSTILE_ID = `<img src=x onerror="window.__pwned=1">`;
const logger = createLogger({ level: "silent" });

let env: FleetEnv;
let host: ModelHost;
let cli: CliRun;
let guarded: string;
let readOnly: Dashboard;
let browser: Browser;
let results: ResultRecord[];
let failures: FailureRecord[];
const figures: Record<string, { bytes: number; requests: number; loadMs: number; domContentLoadedMs: number }> = {};

async function records<T>(which: "results" | "failed"): Promise<T[]> {
  const out: T[] = [];
  for await (const line of streamRecords(env.store, RUN, which)) out.push(JSON.parse(line) as T);
  return out;
}

/** Opens a page, counting every response's bytes; fails on a request to any other origin, even one the CSP would block. */
async function open(name: string, url: string, ready: (p: Page) => Promise<unknown>): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const sizes: Promise<number>[] = [];
  const elsewhere: string[] = [];
  page.on("request", (r) => {
    if (new URL(r.url()).origin !== new URL(url).origin && !r.url().startsWith("data:")) elsewhere.push(r.url());
  });
  page.on("requestfinished", (r) => sizes.push(r.sizes().then((s) => s.responseBodySize + s.responseHeadersSize)));
  // Nothing may be asked of another origin (bull-board's page links Google fonts; the dashboard
  // drops that link), and nothing else fails.
  const blocked: string[] = [];
  page.on("requestfailed", (r) => blocked.push(`${r.url()} ${r.failure()?.errorText}`));
  const response = await page.goto(url, { waitUntil: "load" });
  expect(response?.status(), url).toBe(200);
  expect(response?.headers()["content-security-policy"]).toMatch(/^default-src 'self';/);
  await ready(page);
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
    return { loadMs: nav.loadEventEnd - nav.startTime, domContentLoadedMs: nav.domContentLoadedEventEnd - nav.startTime };
  });
  const bytes = (await Promise.all(sizes)).reduce((a, b) => a + b, 0);
  figures[name] = { bytes, requests: sizes.length, ...timing };
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  expect(elsewhere).toEqual([]);
  expect(blocked).toEqual([]);
  return page;
}

beforeAll(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  env = await startFleetEnv();
  host = await createModelHost(loadConfig({ ...env.env, MODEL_DIR: "", MODEL_URI: "" }, ["model", "engine", "s3", "worker"]), {
    logger,
    metrics: createMetrics({ defaultMetrics: false }),
  });
  await env.startWorker(host, { concurrency: 4 });

  const dir = join(env.tmp, "set");
  await writeSceneSet(dir, { count: 3, seed: 5 });
  const corrupt = await env.store.putBytes(Buffer.from("not an image"), "png");
  const extra = [
    { id: HOSTILE_ID, image: "missing.png", question: "How many objects are there?" },
    { id: "corrupt", image: corrupt.uri, question: "How many objects are there?" },
  ];
  const manifest = join(dir, "items.jsonl");
  await writeFile(manifest, `${await readFile(manifest, "utf8")}${extra.map((l) => JSON.stringify(l)).join("\n")}\n`);
  const deps = { queues: env.queues, store: env.store, ledger: env.ledger, runs: env.runs, logger };
  const settings = { strategy: "stage", beam: 3, seed: 3, judgeMode: "score" } as const;
  await submitRun({ run: RUN, manifest, settings }, deps);
  await waitForRun(RUN, env.ledger, { timeoutMs: 60_000 });
  await submitRun({ run: CANCELLED, manifest, settings }, deps);
  await cancelRun(CANCELLED, deps);
  const bad = join(env.tmp, "bad.jsonl");
  await writeFile(bad, `${JSON.stringify({ id: "b1", image: "nowhere.png", question: "How many?" })}\n`);
  await submitRun({ run: FAILED, manifest: bad, settings, maxBadLines: { lines: 0 } }, deps).catch(() => {});
  expect(await env.runs.state(CANCELLED, 0)).toBe("cancelled");
  expect(await env.runs.state(FAILED, 0)).toBe("failed");
  results = await records<ResultRecord>("results");
  failures = await records<FailureRecord>("failed");

  // The real command, with a token; and a read-only one in process.
  // The real command, on loopback by default, two items a page.
  cli = startCli(["dashboard", "--port", "0", "--page-size", String(PAGE_SIZE)], { ...env.env, DASHBOARD_TOKEN: TOKEN });
  let stdout = "";
  cli.child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  await cli.waitFor(/"event":"ready".*\n/, 30_000);
  const ready = JSON.parse(stdout.split("\n")[0]!) as DashboardReady;
  expect(ready).toMatchObject({ event: "ready", actions: "enabled" });
  expect(new URL(ready.url).hostname).toBe("127.0.0.1");
  guarded = ready.url;
  readOnly = await startDashboard({ sources: env, port: 0, host: "127.0.0.1", logger });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await readOnly?.close();
  if (cli) {
    cli.child.kill("SIGTERM");
    await cli.done;
  }
  await env?.close();
  await host?.close?.();
  if (Object.keys(figures).length > 0) {
    await writeFile(join(ARTIFACTS, "figures.json"), `${JSON.stringify(figures, null, 2)}\n`);
    for (const [name, f] of Object.entries(figures)) {
      console.log(
        `dashboard ${name}: ${f.bytes} bytes in ${f.requests} requests, load ${f.loadMs.toFixed(0)} ms (DOMContentLoaded ${f.domContentLoadedMs.toFixed(0)} ms)`,
      );
    }
  }
});

describe("stagebeam dashboard in Chromium", () => {
  it("the runs page lists each run with its counts, its true state and failures by reason", async () => {
    const page = await open("runs", `${guarded}/runs`, (p) => p.waitForSelector(`tr[data-run="${RUN}"]`));
    const row = page.locator(`tr[data-run="${RUN}"]`);
    expect(await row.locator('[data-field="completed"]').textContent()).toBe("3");
    expect(await row.locator('[data-field="failed"]').textContent()).toBe("2");
    expect(await row.locator(".state").textContent()).toBe("completed with failures");
    expect(await row.locator(".state").getAttribute("class")).toBe("state state-completed-with-failures");
    for (const [run, state] of [
      [CANCELLED, "cancelled"],
      [FAILED, "failed"],
    ] as const) {
      const other = page.locator(`tr[data-run="${run}"] .state`);
      expect(await other.textContent(), run).toBe(state);
      expect(await other.getAttribute("class"), run).toBe(`state state-${state}`);
      // Each state its own colour.
      expect(await other.evaluate((e) => getComputedStyle(e).color)).not.toBe(
        await row.locator(".state").evaluate((e) => getComputedStyle(e).color),
      );
    }
    // The bar shows the failed share apart: 2 of 5 items.
    expect(await row.locator(".bar-failed").evaluate((e) => (e as HTMLElement).style.width)).toBe("40%");
    expect(await row.locator(".count").textContent()).toBe("5/5");
    expect(await row.locator(".reasons").textContent()).toMatch(
      /manifest-image 1.*image-unreadable 1|image-unreadable 1.*manifest-image 1/,
    );
    expect(await page.locator('tr[data-queue="request"]').count()).toBe(1);
    await page.close();
  });

  it("a run's page lists its items and its failure records a page at a time, with their reasons, escaping user text", async () => {
    const page = await open("run", `${guarded}/runs/${RUN}`, (p) => p.waitForSelector("table.failures"));
    // Three results, two a page: the first page, then the next, then no further page.
    const shown = () => page.locator("ul.items li").evaluateAll((els) => els.map((e) => e.getAttribute("data-item")!));
    const first = await shown();
    expect(first).toHaveLength(PAGE_SIZE);
    await page.locator('nav.pager[data-list="after"] a.next').click();
    await page.waitForLoadState("load");
    const second = await shown();
    expect(await page.locator('nav.pager[data-list="after"] a.next').count()).toBe(0);
    expect([...first, ...second]).toEqual(results.map((r) => r.item).sort());
    await page.locator('nav.pager[data-list="after"] a.first').click();
    await page.waitForLoadState("load");
    expect(await shown()).toEqual(first);
    const missing = failures.find((f) => f.id === HOSTILE_ID)!;
    const row = page.locator(`table.failures tr[data-item="${missing.item}"]`);
    expect(await row.locator(".reason").textContent()).toBe("manifest-image");
    expect(await row.locator("td").first().textContent()).toBe(HOSTILE_ID);
    expect(await page.evaluate(() => (window as { __pwned?: number }).__pwned)).toBeUndefined();
    await page.close();
  });

  it("finds an item by its id, and lists the items whose id starts with what was typed", async () => {
    const r = results[0]!;
    const page = await open("search", `${guarded}/runs/${RUN}`, (p) => p.waitForSelector("form.search"));
    await page.locator('form.search input[name="q"]').fill(r.id);
    await page.locator("form.search button").click();
    await page.waitForURL(`${guarded}/runs/${RUN}/items/${r.item}`);
    await page.goto(`${guarded}/runs/${RUN}?q=${encodeURIComponent(r.item.slice(0, -1))}`);
    const listed = await page.locator("ul.items li").evaluateAll((els) => els.map((e) => e.getAttribute("data-item")!));
    expect(listed).toContain(r.item);
    for (const item of listed) expect(item.startsWith(r.item.slice(0, -1))).toBe(true);
    expect(await page.locator("p.notice").textContent()).toMatch(/^No item has the id /);
    await page.close();
  });

  it("the viewer shows an item's image, its four chosen stages and every candidate tree with its verdicts", async () => {
    const r = results[0]!;
    const page = await open("item", `${guarded}/runs/${RUN}/items/${r.item}`, (p) =>
      p.waitForFunction(() => (document.querySelector("img.item-image") as HTMLImageElement | null)?.complete === true),
    );
    expect(await page.locator("img.item-image").evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
    expect(await page.locator("dd.question").textContent()).toBe(r.question);
    for (const stage of ["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"] as const) {
      const block = page.locator(`.stage[data-stage="${stage}"]`);
      expect(await block.locator("h3").textContent()).toBe(stage);
      expect(await block.locator(".text").textContent()).toBe(r.search.stages[stage]);
    }
    expect(r.search.steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
    for (const step of r.search.steps) {
      const section = page.locator(`section.step[data-step="${step.label}"]`);
      const texts = await section.locator("tr.candidate td.text").allTextContents();
      expect(texts).toEqual(step.candidates.map((c) => c.text));
      const leaves = await section.locator("ul.tree li.leaf").evaluateAll((els) => els.map((e) => Number(e.dataset.candidate)));
      expect(leaves.sort()).toEqual([...step.entrants].sort());
      const matches = await section
        .locator("ul.tree li.match")
        .evaluateAll((els) =>
          els
            .map((e) => ({ ...e.dataset }))
            .map((d) => [Number(d.round), Number(d.first), Number(d.second), Number(d.verdict), Number(d.winner)]),
        );
      expect(matches.sort()).toEqual(step.comparisons.map((m) => [m.round, m.first, m.second, m.verdict, m.winner]).sort());
      expect(await section.locator("tr.candidate.winner").getAttribute("data-candidate")).toBe(String(step.winner));
      // The winner's path: its leaf and every match it won, nothing else.
      expect(await section.locator("ul.tree li.on-path").count()).toBe(
        1 + step.comparisons.filter((m) => m.winner === step.winner).length,
      );
    }
    await page.close();
  });

  it("the viewer of a failed item shows its reason", async () => {
    const missing = failures.find((f) => f.id === HOSTILE_ID)!;
    const page = await open("failure", `${guarded}/runs/${RUN}/items/${missing.item}`, (p) => p.waitForSelector("dl.failure"));
    expect(await page.locator("dl.failure .reason").textContent()).toBe("manifest-image");
    expect(await page.locator("dl.failure .message").textContent()).toBe(missing.message);
    expect(missing.message).toContain("missing.png");
    expect(await page.evaluate(() => (window as { __pwned?: number }).__pwned)).toBeUndefined();
    await page.close();
  });

  it("bull-board loads read-only and shows the queues", async () => {
    const page = await open("bull-board", `${guarded}/queues`, (p) => p.getByText("generate").first().waitFor());
    for (const q of ["request", "generate", "judge"]) expect(await page.getByText(q, { exact: true }).count()).toBeGreaterThan(0);
    await page.close();
    const res = await fetch(`${guarded}/queues/api/queues/generate/clean/completed`, { method: "PUT" });
    expect(res.status).toBe(405);
  });
});

describe("the JSON API and the actions", () => {
  const post = (base: string, path: string, body: unknown, token?: string) =>
    fetch(`${base}/api${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });

  it("serves health, the run, an item's record and its image bytes from S3", async () => {
    expect(await (await fetch(`${guarded}/healthz`)).json()).toEqual({ ok: true });
    expect(await (await fetch(`${guarded}/metrics`)).text()).toMatch(/^stagebeam_build_info\{version="[^"]+"\} 1$/m);
    const runs = (await (await fetch(`${guarded}/api/runs`)).json()) as { runs: { run: string; finished: number }[] };
    expect(runs.runs.find((s) => s.run === RUN)).toMatchObject({ finished: 5 });
    const r = results[0]!;
    expect(await (await fetch(`${guarded}/api/runs/${RUN}/items/${r.item}`)).json()).toEqual(r);
    const image = await fetch(`${guarded}/api/runs/${RUN}/items/${r.item}/image`);
    expect(image.headers.get("content-type")).toBe("image/png");
    const key = r.image.slice(`s3://${env.store.bucket}/`.length);
    expect(Buffer.from(await image.arrayBuffer()).equals(Buffer.from((await env.store.getBytes(key))!))).toBe(true);
    expect((await fetch(`${guarded}/api/runs/${RUN}/items/nope`)).status).toBe(404);
    expect((await fetch(`${guarded}/api/runs/bad%20run/items/x`)).status).toBe(400);
  });

  it("refuses every action without a configured token, and without the right one", async () => {
    const refused = await post(readOnly.url, "/queues/generate/clean", { state: "completed" }, TOKEN);
    expect(refused.status).toBe(403);
    expect((await post(guarded, "/queues/generate/clean", { state: "completed" })).status).toBe(401);
    expect((await post(guarded, "/queues/generate/clean", { state: "completed" }, `${TOKEN}x`)).status).toBe(401);
    expect(await env.queues.generate.getCompletedCount()).toBeGreaterThan(0);
  });

  it("with the token, cleans completed jobs and retries a failed one", async () => {
    const cleaned = await post(guarded, "/queues/generate/clean", { state: "completed" }, TOKEN);
    expect(cleaned.status).toBe(200);
    expect(((await cleaned.json()) as { removed: number }).removed).toBeGreaterThan(0);
    expect(await env.queues.generate.getCompletedCount()).toBe(0);

    const corrupt = failures.find((f) => f.id === "corrupt")!;
    expect(corrupt).toMatchObject({ stage: "fleet", reason: "image-unreadable" });
    const job = requestJobId(RUN, corrupt.item);
    const retried = await post(guarded, "/queues/request/retry", { job }, TOKEN);
    expect(await retried.json()).toEqual({ queue: "request", job, retried: true });
    // The worker takes it again and it fails again, for the same reason: a new failure record.
    await expect
      .poll(async () => (await records<FailureRecord>("failed")).find((f) => f.id === "corrupt")!.at, { timeout: 20_000 })
      .not.toBe(corrupt.at);
    const again = await post(guarded, "/queues/request/retry", { job: `${RUN}/no-such-item` }, TOKEN);
    expect(again.status).toBe(404);
  });
});
