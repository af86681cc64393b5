/**
 * Starts a `stagebeam exporter` child process, as the integration tests do (and as a
 * supervisor would): ready once it has printed its `ready` line (listening on its port).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { endChild, hasExited, OutputTail, trackChild, waitForReadyLine } from "./child-process.ts";
import { CLI_MAIN, REPO_ROOT } from "./worker-processes.ts";
import type { ConfigEnv } from "../../../shared/io/config.ts";

/** The line the exporter prints on stdout once it serves /metrics. */
export interface ExporterReady {
  event: "ready";
  pid: number;
  metricsPort: number;
}

export interface ExporterProcess {
  child: ChildProcess;
  ready: ExporterReady;
  metricsUrl: string;
  /** The last lines it wrote on stderr (its JSON logs). */
  logs(): string;
  /** SIGTERM, SIGKILL after `timeoutMs`; resolves with the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
}

export interface StartExporterOptions {
  /** REDIS_URL, QUEUE_PREFIX, …, over this process's environment. */
  env: Record<string, string | undefined>;
  /** Its /metrics port (default: a free one). */
  metricsPort?: number;
  readyTimeoutMs?: number;
}

export async function startExporterProcess(opts: StartExporterOptions): Promise<ExporterProcess> {
  const settings: ConfigEnv = { METRICS_PORT: String(opts.metricsPort ?? 0) };
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env, ...settings })) if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, ["--import", "tsx", CLI_MAIN, "exporter"], {
    cwd: REPO_ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  trackChild(child);
  const tail = new OutputTail(60);
  child.stderr!.on("data", (d: Buffer) => tail.push(d));
  const ready = await waitForReadyLine<ExporterReady>(child, "exporter", tail, opts.readyTimeoutMs ?? 60_000);
  return {
    child,
    ready,
    metricsUrl: `http://127.0.0.1:${ready.metricsPort}/metrics`,
    logs: () => tail.text(),
    stop: async (timeoutMs = 10_000) => {
      if (!hasExited(child)) await endChild(child, "SIGTERM", timeoutMs);
      return child.exitCode;
    },
  };
}
