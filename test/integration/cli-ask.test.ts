/**
 * `stagebeam ask` end to end on the bundled model, and its answers to bad input: each gets a
 * clear message naming the field and what was expected, and a non-zero exit code.
 */
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../apps/demo/services/worker-processes.ts";
import { runCli } from "../support/cli.ts";

const IMAGE = path.join(REPO_ROOT, "apps/demo/sample/s42-000000.png");
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "ask-"));
});

const ask = (image: string, extra: string[] = [], question = "How many red objects are there?") =>
  runCli(["ask", "--image", image, "--question", question, ...extra]);

describe("stagebeam ask", () => {
  it("answers in four well-formed stages and reports its cost", async () => {
    const out = await ask(IMAGE, ["--strategy", "stage", "--beam", "2", "--seed", "1"]);
    expect(out.code, out.stderr).toBe(0);
    for (const stage of ["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"])
      expect(out.stdout).toMatch(new RegExp(`^${stage}\\s+\\S`, "m"));
    expect(out.stdout).toMatch(/^answer: \S+$/m);
    expect(out.stdout).toMatch(/model calls .* tokens generated/);
    expect(out.stderr.match(/the bundled model knows only its synthetic scenes/g)).toHaveLength(1);
  });

  it("prints the full trace with --json", async () => {
    const out = await ask(IMAGE, ["--beam", "2", "--json"]);
    expect(out.code, out.stderr).toBe(0);
    const trace = JSON.parse(out.stdout) as { result: { steps: { comparisons: unknown[] }[]; wellFormed: boolean } };
    expect(trace.result.steps).toHaveLength(4);
    expect(trace.result.wellFormed).toBe(true);
  });

  it.each([
    ["zero-byte", async (file: string) => writeFile(file, Buffer.alloc(0)), /image.*empty|0 bytes/i],
    ["non-image", async (file: string) => writeFile(file, "just some text, not an image"), /image/i],
    [
      "corrupt",
      async (file: string) =>
        writeFile(file, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(200, 7)])),
      /image/i,
    ],
    ["truncated", async (file: string) => writeFile(file, (await readFile(IMAGE)).subarray(0, 300)), /image/i],
    [
      "over-sized",
      async (file: string) =>
        writeFile(
          file,
          await sharp({ create: { width: 8000, height: 8000, channels: 3, background: "#fff" } })
            .png()
            .toBuffer(),
        ),
      /image.*(pixels|too large|limit)/i,
    ],
  ])("rejects a %s image with a clear error", async (name, make, message) => {
    const file = path.join(dir, `${name}.png`);
    await make(file);
    const out = await ask(file, ["--beam", "1", "--strategy", "none"]);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(message);
  });

  it("rejects a question that does not fit the context window", async () => {
    const out = await ask(IMAGE, ["--strategy", "none"], "How many red objects are there? ".repeat(400));
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/question.*context window/);
  });

  it("rejects an unknown strategy and a beam below 1 with exit code 2", async () => {
    const strategy = await ask(IMAGE, ["--strategy", "beamsearch"]);
    expect(strategy.code).toBe(2);
    expect(strategy.stderr).toMatch(
      /strategy must be one of none, best-of-n, sentence, stage, greedy, vote, vote-weighted, swires, got "beamsearch"/,
    );
    const beam = await ask(IMAGE, ["--beam", "0"]);
    expect(beam.code).toBe(2);
    expect(beam.stderr).toMatch(/beam must be an integer >= 1, got 0/);
    const wide = await ask(IMAGE, ["--beam", "1000"]);
    expect(wide.code).toBe(2);
    expect(wide.stderr).toBe(
      "stagebeam: --beam 1000: expected 1 to 64 candidates a step (each step costs about 1000 times one candidate); pass --max-beam 1000 to allow it\nRun 'stagebeam ask --help' for usage and examples.\n",
    );
    const empty = await ask(IMAGE, [], "");
    expect(empty.code).toBe(2);
  });
});
