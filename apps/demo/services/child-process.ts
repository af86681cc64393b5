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
