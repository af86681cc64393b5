/**
 * Starts `stagebeam worker` child processes, as the demo and the integration tests do (and
 * as a supervisor would): each gets the given environment, its own /metrics port, and is
 * ready once it has printed its `ready` line (model loaded, queues connected).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { endChild, hasExited, OutputTail, trackChild, waitForReadyLine } from "./child-process.ts";
import type { ConfigEnv } from "../../../shared/io/config.ts";

export const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));
export const CLI_MAIN = fileURLToPath(new URL("../../cli/main.ts", import.meta.url));

/** The line a worker prints on stdout once it takes work. */
export interface WorkerReady {
  event: "ready";
  name: string;
  pid: number;
  metricsPort: number;
  /** The policy's id and digest (the verifier's, on a worker that holds only the verifier). */
  model: string;
  digest: string;
  /** Set when the worker holds the verifier. */
  verifier?: string;
  verifierDigest?: string;
  concurrency: number;
}

export interface WorkerProcess {
  index: number;
  pid: number;
  child: ChildProcess;
  ready: WorkerReady;
  metricsUrl: string;
  /** The last lines the worker wrote on stderr (its JSON logs). */
  logs(): string;
  /**
   * SIGTERM (graceful: the worker finishes or hands back its jobs within its grace period),
   * SIGKILL after `timeoutMs`. Resolves with the exit code.
   */
  stop(timeoutMs?: number): Promise<number | null>;
  /** SIGKILL, as in a crash. */
  kill(): Promise<void>;
}

export interface StartWorkersOptions {
  /** Variables for the workers (REDIS_URL, S3_*, WORKER_CONCURRENCY, …), over this process's environment. */
  env: Record<string, string | undefined>;
  /** Extra `stagebeam worker` arguments. */
  args?: readonly string[];
  /** Metrics port per worker (default: a free one each). */
  metricsPorts?: readonly number[];
  /** Also append each worker's stderr to <logDir>/worker-<i>.log. */
  logDir?: string;
  /** How long to wait for the ready line (default 180 s: a model may take a while to load). */
  readyTimeoutMs?: number;
  /** Also forward each worker's stderr here (prefixed). */
  forwardStderr?: NodeJS.WritableStream;
}

export async function startWorkerProcesses(count: number, opts: StartWorkersOptions): Promise<WorkerProcess[]> {
  const started: WorkerProcess[] = [];
  try {
    const all = await Promise.allSettled(Array.from({ length: count }, (_, i) => startOne(i, opts)));
    for (const r of all) if (r.status === "fulfilled") started.push(r.value);
    const failed = all.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return started;
  } catch (err) {
    await Promise.all(started.map((w) => w.kill()));
    throw err;
  }
}

async function startOne(index: number, opts: StartWorkersOptions): Promise<WorkerProcess> {
  const env: Record<string, string> = {};
  const settings: ConfigEnv = {
    METRICS_PORT: String(opts.metricsPorts?.[index] ?? 0),
    // The worker stops (gracefully) when its stdin closes: if this process dies, so do its workers.
    STAGEBEAM_STOP_ON_STDIN_EOF: "true",
  };
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env, ...settings })) if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, ["--import", "tsx", CLI_MAIN, "worker", ...(opts.args ?? [])], {
    cwd: REPO_ROOT,
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  trackChild(child);
  const tail = new OutputTail(60);
  let log: WriteStream | undefined;
  if (opts.logDir !== undefined) {
    await mkdir(opts.logDir, { recursive: true });
    log = createWriteStream(join(opts.logDir, `worker-${index}.log`), { flags: "a" });
  }
  child.stderr!.on("data", (d: Buffer) => {
    tail.push(d);
    log?.write(d);
    opts.forwardStderr?.write(
      d
        .toString()
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => `[worker ${index}] ${l}\n`)
        .join(""),
    );
  });
  child.once("exit", () => log?.end());

  const ready = await waitForReadyLine<WorkerReady>(child, `worker ${index}`, tail, opts.readyTimeoutMs ?? 180_000);

  return {
    index,
    pid: child.pid ?? -1,
    child,
    ready,
    metricsUrl: `http://127.0.0.1:${ready.metricsPort}/metrics`,
    logs: () => tail.text(),
    stop: async (timeoutMs = 60_000) => {
      await endChild(child, "SIGTERM", timeoutMs);
      return child.exitCode;
    },
    kill: async () => {
      if (!hasExited(child)) await endChild(child, "SIGKILL", 5_000);
    },
  };
}
