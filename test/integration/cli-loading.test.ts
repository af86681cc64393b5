/**
 * The in-process commands (`ask`, `eval`) must not load the fleet's Redis stack: whoever runs
 * them on a laptop needs no Redis and should not pay for BullMQ's and ioredis' loading. Each
 * case runs the real command in a fresh node and records every module it resolves.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CLI_MAIN, REPO_ROOT } from "../../apps/demo/services/worker-processes.ts";

const RECORDER = fileURLToPath(new URL("../support/record-modules.mjs", import.meta.url));
const IMAGE = path.join(REPO_ROOT, "apps/demo/sample/s42-000000.png");
const FLEET_PACKAGE = /\/node_modules\/(bullmq|ioredis)\//;

/** The URLs of every module `stagebeam <args>` resolves, once it has exited 0. */
async function modulesLoadedBy(args: readonly string[]): Promise<string[]> {
  const file = path.join(await mkdtemp(path.join(tmpdir(), "cli-loading-")), "modules.txt");
  const child = spawn(process.execPath, ["--import", "tsx", "--import", RECORDER, CLI_MAIN, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: "warn", RECORD_MODULES_TO: file },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  expect(code, stderr).toBe(0);
  return (await readFile(file, "utf8")).split("\n").filter((url) => url !== "");
}

describe("what a command loads", () => {
  it.each([
    ["ask", ["ask", "--image", IMAGE, "--question", "How many red objects are there?", "--beam", "1"]],
    ["ask --help", ["ask", "--help"]],
    ["eval --help", ["eval", "--help"]],
  ])("%s loads neither BullMQ nor ioredis", async (_, args) => {
    const urls = await modulesLoadedBy(args);
    expect(urls.some((url) => url.endsWith("/apps/cli/commands/ask.ts") || url.endsWith("/apps/cli/commands/eval.ts"))).toBe(
      true,
    );
    expect(urls.filter((url) => FLEET_PACKAGE.test(url))).toEqual([]);
  });

  it("sees BullMQ where a command does load it (submit)", async () => {
    const urls = await modulesLoadedBy(["submit", "--help"]);
    expect(urls.some((url) => FLEET_PACKAGE.test(url))).toBe(true);
  });
});
