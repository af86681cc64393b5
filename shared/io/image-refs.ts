/**
 * Image references of a manifest: an s3://bucket/key URI, a `data:image/…;base64,` URL (staged
 * in S3 by the producer), or a local path or file:// URL that must resolve inside the image
 * root, through symlinks too, to a regular file. http(s) URLs are refused: the fleet fetches
 * nothing from the web.
 *
 * Relative paths resolve against the base folder (the manifest's own); the root, by default that
 * same folder, is where they may lead. A wider root (`--image-root DIR` of `eval` and `submit`)
 * admits a set whose images are symlinks into a data folder elsewhere without moving the paths.
 */
import { realpath, stat } from "node:fs/promises";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

export type ImageRefResult = { ok: true; image: string } | { ok: false; reason: string };

const S3_URI = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/;
const DATA_URL = /^data:image\/(png|jpeg|jpg|webp|gif|tiff|avif);base64,[A-Za-z0-9+/]+={0,2}$/;
/** How a user lets images live elsewhere, said under each refusal. */
const WIDEN = " (--image-root DIR widens it)";
/** Largest inline image accepted (its base64 text). */
export const MAX_DATA_URL_CHARS = 16 * 2 ** 20;

/** The bytes and extension of a data: URL that resolve() accepted. */
export function decodeDataUrl(url: string): { bytes: Buffer; ext: string } {
  const comma = url.indexOf(",");
  const type = url.slice("data:image/".length, url.indexOf(";"));
  return { bytes: Buffer.from(url.slice(comma + 1), "base64"), ext: type === "jpeg" ? "jpg" : type };
}

/** Resolves image references against a root folder, confining local paths to it. */
export class ImageResolver {
  private realRoot: Promise<string> | undefined;
  readonly root: string;
  /** Where relative paths resolve: the manifest's folder (the root when not given). */
  readonly base: string;

  constructor(
    root: string,
    private readonly checkFiles = true,
    base: string = root,
  ) {
    this.root = resolve(root);
    this.base = resolve(base);
  }

  private rootReal(): Promise<string> {
    this.realRoot ??= realpath(this.root);
    return this.realRoot;
  }

  async resolve(ref: string): Promise<ImageRefResult> {
    if (ref.startsWith("s3://")) {
      return S3_URI.test(ref)
        ? { ok: true, image: ref }
        : { ok: false, reason: `got ${JSON.stringify(ref)}; expected s3://bucket/key with a valid bucket name and a key` };
    }
    if (ref.startsWith("data:")) {
      if (ref.length > MAX_DATA_URL_CHARS)
        return { ok: false, reason: `a data: URL of ${ref.length} characters; expected at most ${MAX_DATA_URL_CHARS}` };
      return DATA_URL.test(ref)
        ? { ok: true, image: ref }
        : {
            ok: false,
            reason: `got ${JSON.stringify(ref.slice(0, 40))}…; expected data:image/<png|jpeg|webp|gif|tiff|avif>;base64,<base64>`,
          };
    }
    if (/^https?:\/\//i.test(ref)) {
      return {
        ok: false,
        reason: `got ${JSON.stringify(ref)}; http(s) images are not fetched: stage the image in S3 (s3://bucket/key) or inline it as a data: URL`,
      };
    }
    if (/^file:\/\//i.test(ref)) {
      let path: string;
      try {
        path = fileURLToPath(ref);
      } catch (e) {
        return { ok: false, reason: `got ${JSON.stringify(ref)}; ${(e as Error).message}` };
      }
      return this.resolve(path);
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) {
      return {
        ok: false,
        reason: `got ${JSON.stringify(ref)}; expected a local path inside ${this.root} or s3://bucket/key (other URL schemes are not fetched)`,
      };
    }
    if (ref.includes("\0")) return { ok: false, reason: "the path contains a NUL character" };
    const abs = resolve(this.base, ref);
    if (!inside(this.root, abs)) {
      return { ok: false, reason: `path ${JSON.stringify(ref)} escapes the image root ${this.root}${WIDEN}` };
    }
    if (!this.checkFiles) return { ok: true, image: abs };
    let real: string;
    try {
      real = await realpath(abs);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return {
        ok: false,
        reason:
          code === "ENOENT" || code === "ENOTDIR" ? `file not found: ${abs}` : `cannot read ${abs}: ${(e as Error).message}`,
      };
    }
    const root = await this.rootReal();
    if (!inside(root, real)) {
      return {
        ok: false,
        reason: `path ${JSON.stringify(ref)} leads through a symlink to ${real}, outside the image root ${this.root}${WIDEN}`,
      };
    }
    const st = await stat(real);
    if (!st.isFile()) return { ok: false, reason: `${abs} is not a regular file` };
    return { ok: true, image: real };
  }
}

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === "" ? false : !rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel);
}
