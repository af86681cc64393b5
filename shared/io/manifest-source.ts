/**
 * Where a manifest's bytes come from: a local file, stdin (`-`) or `s3://bucket/key`, gzip
 * accepted (recognised by its magic bytes, whatever the name), and its format: the one given,
 * else the name's extension (`.gz` aside), else the first byte (`{` → JSONL, else CSV).
 */
import { createReadStream } from "node:fs";
import { dirname, resolve } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { detectFormat } from "./manifest.ts";
import { parseS3Uri, type S3Store } from "./storage/s3-store.ts";

export type ManifestFileFormat = "jsonl" | "csv";

export const isS3Manifest = (source: string): boolean => source.startsWith("s3://");

/**
 * Where a manifest's relative image paths resolve (an ImageResolver's base, and its root unless
 * `--image-root` widens it): a file's own folder; for stdin the current directory, as a shell
 * user means a relative path; for an S3 manifest the whole file system (its local paths must be
 * absolute).
 */
export function imageBase(source: string, cwd = process.cwd()): string {
  if (source === "-") return cwd;
  if (isS3Manifest(source)) return "/";
  return dirname(resolve(source));
}

/** The format the name says, `.gz` aside; undefined when it says none. */
export function formatFromName(source: string): ManifestFileFormat | undefined {
  const f = detectFormat(source.replace(/\.gz$/i, ""));
  return f === "folder" ? undefined : f;
}

export interface OpenedManifest {
  stream: Readable;
  format: ManifestFileFormat;
  gzip: boolean;
}

/** The first chunk of `input`, and a stream that gives it back followed by the rest. */
async function peek(input: Readable): Promise<{ head: Buffer; stream: Readable }> {
  const it = input[Symbol.asyncIterator]();
  const first = await it.next();
  const head = first.done ? Buffer.alloc(0) : Buffer.from(first.value as Buffer);
  const stream = Readable.from(
    (async function* () {
      if (head.length > 0) yield head;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value as Buffer;
      }
    })(),
  );
  stream.once("close", () => input.destroy());
  return { head, stream };
}

const isGzip = (b: Buffer) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

/** Opens a manifest for reading; throws an Error naming the source when it cannot. */
export async function openManifest(
  source: string,
  opts: { format?: ManifestFileFormat; store?: S3Store; stdin?: Readable } = {},
): Promise<OpenedManifest> {
  let raw: Readable;
  if (source === "-") {
    raw = opts.stdin ?? process.stdin;
  } else if (isS3Manifest(source)) {
    const where = parseS3Uri(source);
    if (!where) throw new Error(`manifest ${source} is not an s3://bucket/key URI`);
    if (!opts.store) throw new Error(`manifest ${source} is in S3, but no S3 store is configured`);
    const body = await opts.store.getStream(where.key, where.bucket);
    if (!body) throw new Error(`manifest not found: ${source}`);
    raw = body;
  } else {
    raw = createReadStream(source);
    await new Promise<void>((resolve, reject) => {
      raw.once("open", () => resolve());
      raw.once("error", (e: NodeJS.ErrnoException) =>
        reject(new Error(e.code === "ENOENT" ? `manifest not found: ${source}` : `cannot read manifest ${source}: ${e.message}`)),
      );
    });
  }
  const { head, stream } = await peek(raw);
  const gzip = isGzip(head);
  let text: Readable = stream;
  let firstText = head;
  if (gzip) {
    const gunzip = createGunzip();
    stream.pipe(gunzip);
    stream.once("error", (e) => gunzip.destroy(e));
    const out = new PassThrough();
    gunzip.pipe(out);
    gunzip.once("error", (e) => out.destroy(new Error(`manifest ${source} is not valid gzip: ${e.message}`)));
    const peeked = await peek(out);
    text = peeked.stream;
    firstText = peeked.head;
  }
  const sniffed: ManifestFileFormat = firstText
    .toString("utf8")
    .replace(/^\uFEFF/, "")
    .trimStart()
    .startsWith("{")
    ? "jsonl"
    : "csv";
  const format = opts.format ?? (source === "-" ? undefined : formatFromName(source)) ?? sniffed;
  return { stream: text, format, gzip };
}
