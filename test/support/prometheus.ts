/**
 * A real Prometheus for integration tests: the shipped infra/prometheus/prometheus.yml with
 * its job names, relabelling and rule files, but scraping every second, evaluating rules
 * every second, and finding each job's targets in a file the test writes (file_sd), so that
 * workers can join while it runs. Storage in a temp dir, a free port, loopback only.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { endChild, hasExited, OutputTail, trackChild } from "../../apps/demo/services/child-process.ts";
import { freePort } from "../../apps/demo/services/free-port.ts";
import { REPO_ROOT } from "../../apps/demo/services/worker-processes.ts";

export const PROMETHEUS_CONFIG = join(REPO_ROOT, "infra/prometheus/prometheus.yml");

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface PrometheusServer {
  url: string;
  /** Job names of the shipped config. */
  jobs: string[];
  /** Scrape these host:port targets for the job (replaces the job's list). */
  setTargets(job: string, targets: readonly string[]): Promise<void>;
  /** An instant query (/api/v1/query) at the current time; throws on a PromQL error. */
  query(expr: string): Promise<PromSample[]>;
  /** GET an /api/v1 path, returning `data`. */
  api<T>(path: string): Promise<T>;
  logs(): string;
  stop(): Promise<void>;
}

interface ScrapeConfig {
  job_name: string;
  [sd: string]: unknown;
}

/** The prometheus binary on PATH, or an error that says how to install it. */
export function prometheusBinary(): string {
  const found = spawnSync("sh", ["-c", "command -v prometheus"], { encoding: "utf8" });
  if (found.status !== 0) {
    throw new Error("prometheus is not on PATH: run scripts/ensure-system-deps.sh (Debian package prometheus)");
  }
  return found.stdout.trim();
}

export async function startPrometheus(dir: string): Promise<PrometheusServer> {
  const bin = prometheusBinary();
  const config = parse(await readFile(PROMETHEUS_CONFIG, "utf8")) as {
    global: Record<string, string>;
    rule_files: string[];
    scrape_configs: ScrapeConfig[];
  };
  await mkdir(join(dir, "targets"), { recursive: true });
  const targetsFile = (job: string) => join(dir, "targets", `${job}.json`);
  const setTargets = async (job: string, targets: readonly string[]) => {
    // Written whole, then renamed: Prometheus never reads half a file.
    await writeFile(`${targetsFile(job)}.tmp`, JSON.stringify([{ targets }]));
    await rename(`${targetsFile(job)}.tmp`, targetsFile(job));
  };
  config.global = { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" };
  config.rule_files = config.rule_files.map((f) => join(REPO_ROOT, "infra/prometheus", f));
  config.scrape_configs = config.scrape_configs.map((sc) => {
    const kept = Object.fromEntries(Object.entries(sc).filter(([k]) => !k.endsWith("_sd_configs") && k !== "static_configs"));
    return { ...kept, job_name: sc.job_name, file_sd_configs: [{ files: [targetsFile(sc.job_name)], refresh_interval: "1s" }] };
  });
  const jobs = config.scrape_configs.map((sc) => sc.job_name);
  for (const job of jobs) await setTargets(job, []);
  const configFile = join(dir, "prometheus.yml");
  await writeFile(configFile, stringify(config));

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "tsdb")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  trackChild(child);
  const tail = new OutputTail(40);
  child.stderr!.on("data", (d: Buffer) => tail.push(d));

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (hasExited(child)) throw new Error(`prometheus exited during start (${child.exitCode}):\n${tail.text()}`);
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await endChild(child, "SIGKILL");
      throw new Error(`prometheus did not become ready within 30 s:\n${tail.text()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}/api/v1/${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.error ?? res.status}`);
    return body.data;
  };
  return {
    url,
    jobs,
    setTargets,
    api,
    query: async (expr) => {
      const data = await api<{ resultType: string; result: PromSample[] }>(`query?query=${encodeURIComponent(expr)}`);
      if (data.resultType !== "vector") throw new Error(`${expr}: expected an instant vector, got a ${data.resultType}`);
      return data.result;
    },
    logs: () => tail.text(),
    stop: () => endChild(child, "SIGTERM", 10_000),
  };
}
