/** Where a manifest's bytes come from (a file, stdin, gzip), its format, and the run-level bad-line limit. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { badLineLimitOption } from "../../apps/cli/commands/submit.ts";
import { openManifest } from "../../shared/io/manifest-source.ts";
import { errorsPathOf } from "../../workers/fleet/ops/export.ts";
import { overBadLineLimit } from "../../workers/fleet/feed/feeder.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sb-source-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function text(r: Readable): Promise<string> {
  let s = "";
  for await (const c of r) s += c.toString();
  return s;
}

describe("manifest sources", () => {
  it("reads gzip by its magic bytes, whatever the name, and tells the format from the name or the first byte", async () => {
    const jsonl = '{"id":"a","image":"s3://b-1/x.png","question":"Q?"}\n';
    await writeFile(join(dir, "m.jsonl.gz"), gzipSync(jsonl));
    await writeFile(join(dir, "m.bin"), gzipSync("id,image,question\na,x.png,Q\n"));
    const a = await openManifest(join(dir, "m.jsonl.gz"));
    expect({ format: a.format, gzip: a.gzip, text: await text(a.stream) }).toEqual({ format: "jsonl", gzip: true, text: jsonl });
    const b = await openManifest(join(dir, "m.bin"));
    expect({ format: b.format, gzip: b.gzip }).toEqual({ format: "csv", gzip: true });
    b.stream.destroy();
    const c = await openManifest("-", { stdin: Readable.from([Buffer.from(jsonl)]) });
    expect({ format: c.format, gzip: c.gzip, text: await text(c.stream) }).toEqual({ format: "jsonl", gzip: false, text: jsonl });
    await expect(openManifest(join(dir, "nope.jsonl"))).rejects.toThrow(/manifest not found: .*nope\.jsonl/);
    await expect(openManifest("s3://bucket-1/m.jsonl")).rejects.toThrow(/is in S3, but no S3 store is configured/);
  });

  it("names the error file after the output file", () => {
    expect(errorsPathOf("out.jsonl")).toBe("out.errors.jsonl");
    expect(errorsPathOf("s3://b/runs/r/export/output.jsonl")).toBe("s3://b/runs/r/export/output.errors.jsonl");
    expect(errorsPathOf("results")).toBe("results.errors.jsonl");
  });
});

describe("the bad-line limit", () => {
  it("parses N or P% and judges a percentage on 100 lines or more (or at the end)", () => {
    expect(badLineLimitOption("10")).toEqual({ lines: 10 });
    expect(badLineLimitOption("0.5%")).toEqual({ percent: 0.5 });
    expect(() => badLineLimitOption("1.5")).toThrow(/whole number of lines/);
    expect(() => badLineLimitOption("120%")).toThrow(/percentage up to 100/);
    expect(overBadLineLimit({ lines: 2 }, 3, 5, false)).toBe(true);
    expect(overBadLineLimit({ lines: 2 }, 2, 5, false)).toBe(false);
    expect(overBadLineLimit({ percent: 10 }, 2, 10, false)).toBe(false);
    expect(overBadLineLimit({ percent: 10 }, 2, 10, true)).toBe(true);
    expect(overBadLineLimit({ percent: 10 }, 11, 100, false)).toBe(true);
    expect(overBadLineLimit(null, 1_000, 1_000, true)).toBe(false);
  });
});
