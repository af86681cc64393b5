/**
 * The installed `stagebeam` command (package.json `bin`, what `npm link` puts on PATH): plain
 * node runs it, with no --import of tsx, and it says nothing on stderr when all is well.
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../apps/demo/services/worker-processes.ts";

const packageJson = JSON.parse(await readFile(path.join(REPO_ROOT, "package.json"), "utf8")) as {
  version: string;
  bin: { stagebeam: string };
};

function runBin(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, packageJson.bin.stagebeam), ...args], {
    cwd: path.dirname(REPO_ROOT),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
}

describe("the stagebeam bin", () => {
  it("prints the package's version", async () => {
    expect(await runBin(["--version"])).toEqual({ code: 0, stdout: `${packageJson.version}\n`, stderr: "" });
  });

  it("runs a subcommand's --help", async () => {
    const out = await runBin(["ask", "--help"]);
    expect(out).toMatchObject({ code: 0, stderr: "" });
    expect(out.stdout).toMatch(/^Usage: stagebeam ask/);
  });
});
