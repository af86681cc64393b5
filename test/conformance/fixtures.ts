/**
 * The conformance fixtures at test time: the tiny published-layout folders of make_fixtures.py in
 * a temporary directory (about 3 s for all four families), and the two test images.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";

export const FAMILIES = ["llava", "idefics3", "qwen2_vl", "qwen2_5_vl"] as const;
export type FixtureFamily = (typeof FAMILIES)[number];

export interface Fixtures {
  /** The folder holding one fixture folder per family. */
  root: string;
  dir(family: FixtureFamily): string;
  /** A 128×128 scene and a 200×120 one (a different tile grid / patch grid per family). */
  images: { square: Buffer; wide: Buffer };
  remove(): void;
}

export async function makeFixtures(): Promise<Fixtures> {
  const root = mkdtempSync(path.join(tmpdir(), "stagebeam-conformance-"));
  execFileSync("/usr/bin/python3", ["test/conformance/make_fixtures.py", root, "--family", "all"], { stdio: "pipe" });
  const square = readFileSync("apps/demo/sample/s42-000000.png");
  const wide = await sharp(readFileSync("apps/demo/sample/s42-000003.png")).resize(200, 120, { fit: "fill" }).png().toBuffer();
  return {
    root,
    dir: (family) => path.join(root, family),
    images: { square, wide },
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

export interface MllamaFixture {
  /** The Hugging Face-layout checkpoint (bf16 shards + index) the exporter read. */
  checkpoint: string;
  /** The exported model folder (fp32 and fp16 sessions). */
  dir: string;
  /** Synthetic images by name, and reference.json: the numpy processor's tensors for each. */
  images: string;
  remove(): void;
}

/** The mllama fixture: a tiny checkpoint written, exported by models/export, and its processor reference (about 10 s). */
export function makeMllamaFixture(): MllamaFixture {
  const root = mkdtempSync(path.join(tmpdir(), "stagebeam-mllama-"));
  execFileSync("/usr/bin/python3", ["test/conformance/make_fixtures.py", root, "--family", "mllama"], { stdio: "pipe" });
  return {
    checkpoint: path.join(root, "mllama-checkpoint"),
    dir: path.join(root, "mllama"),
    images: path.join(root, "mllama-images"),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}
