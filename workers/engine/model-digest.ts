/**
 * The model folder's digest, for traces and for refusing an unexpected folder: `sha256:` over
 * `sha256sum` lines of the model files, sorted by name.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { JUDGE_TEMPLATES_FILE, REQUIRED_FILES } from "./model-files.ts";

export interface DigestedFile {
  name: string;
  bytes: number;
  sha256: string;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The files a digest covers: the required ones, the judge templates and ONNX external data. */
async function digestFileNames(dir: string): Promise<string[]> {
  const names = new Set<string>(REQUIRED_FILES);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    if (entry.name === JUDGE_TEMPLATES_FILE || /\.onnx[._]data$/.test(entry.name)) names.add(entry.name);
  }
  return [...names].sort();
}

/**
 * `sha256:` + sha256 of the lines `<sha256 of file>  <name>\n` for the model files sorted by
 * name, i.e. what `sha256sum <files sorted> | sha256sum` prints.
 */
export async function modelDigest(dir: string): Promise<{ digest: string; files: DigestedFile[] }> {
  const files: DigestedFile[] = [];
  for (const name of await digestFileNames(dir)) {
    const full = path.join(dir, name);
    files.push({ name, bytes: (await stat(full)).size, sha256: await sha256File(full) });
  }
  const outer = createHash("sha256");
  for (const f of files) outer.update(`${f.sha256}  ${f.name}\n`);
  return { digest: `sha256:${outer.digest("hex")}`, files };
}

export function normaliseDigest(digest: string): string {
  const d = digest.trim().toLowerCase();
  return d.startsWith("sha256:") ? d : `sha256:${d}`;
}
