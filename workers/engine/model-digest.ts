/**
 * The model folder's digest, for traces and for refusing an unexpected folder: `sha256:` over
 * `sha256sum` lines of the files the engine loads (the session files of the chosen dtypes with
 * their external data, and the JSON and template files read), sorted by path. Files the engine
 * does not read (other dtypes, a README) do not count.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";

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

/**
 * `sha256:` + sha256 of the lines `<sha256 of file>  <name>\n` for `names` (paths relative to
 * `dir`) sorted, i.e. what `sha256sum <files sorted> | sha256sum` prints in the folder.
 */
export async function modelDigest(dir: string, names: readonly string[]): Promise<{ digest: string; files: DigestedFile[] }> {
  const files: DigestedFile[] = [];
  for (const name of [...new Set(names)].sort()) {
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
