/** Small helpers for the server child processes that tests and the demo start. */
import type { ChildProcess } from "node:child_process";

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kill the child (SIGTERM) if this process exits without stopping it. */
export function trackChild(child: ChildProcess): void {
  live.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const c of live) c.kill("SIGTERM");
    });
  }
}

export function untrackChild(child: ChildProcess): void {
  live.delete(child);
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves true once the child has exited, false after timeoutMs. */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    child.once("exit", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Send `signal`, wait up to graceMs, then SIGKILL. */
export async function endChild(child: ChildProcess, signal: NodeJS.Signals | "stdin", graceMs = 10_000): Promise<void> {
  untrackChild(child);
  if (hasExited(child)) return;
  if (signal === "stdin") child.stdin?.end();
  else child.kill(signal);
  if (!(await waitExit(child, graceMs))) {
    child.kill("SIGKILL");
    await waitExit(child, 5_000);
  }
}

/** Keeps the last lines a child wrote, for error messages. */
export class OutputTail {
  private lines: string[] = [];
  private partial = "";
  constructor(private readonly max = 30) {}
  push(chunk: Buffer | string): void {
    const parts = (this.partial + chunk.toString()).split("\n");
    this.partial = parts.pop() ?? "";
    this.lines.push(...parts);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
  }
  text(): string {
    const all = this.partial ? [...this.lines, this.partial] : this.lines;
    return all.join("\n").trim() || "(no output)";
  }
}

/**
 * The first line on the child's stdout that is a JSON object with `"event": "ready"` (how
 * `stagebeam worker` and `stagebeam exporter` say they take work). Rejects, with the tail of
 * the child's stderr, when it exits first or `timeoutMs` passes; the child is then killed.
 */
export async function waitForReadyLine<T extends { event: "ready" }>(
  child: ChildProcess,
  what: string,
  tail: OutputTail,
  timeoutMs: number,
): Promise<T> {
  try {
    return await new Promise<T>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => {
        reject(new Error(`${what} did not become ready within ${timeoutMs} ms:\n${tail.text()}`));
      }, timeoutMs);
      const onData = (d: Buffer) => {
        out += d.toString();
        for (let nl = out.indexOf("\n"); nl >= 0; nl = out.indexOf("\n")) {
          const line = out.slice(0, nl).trim();
          out = out.slice(nl + 1);
          let msg: T | undefined;
          try {
            msg = JSON.parse(line) as T;
          } catch {
            continue; // not our line
          }
          if (msg?.event === "ready") {
            clearTimeout(timer);
            child.stdout!.off("data", onData);
            child.stdout!.resume();
            resolve(msg);
            return;
          }
        }
      };
      child.stdout!.on("data", onData);
      child.once("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`could not start ${what}: ${e.message}`));
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        // Let stderr drain before reporting it.
        setTimeout(() => reject(new Error(`${what} exited during start (${code ?? signal}):\n${tail.text()}`)), 50);
      });
    });
  } catch (err) {
    if (!hasExited(child)) await endChild(child, "SIGKILL");
    throw err;
  }
}
