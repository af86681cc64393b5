/**
 * Streaming manifest readers: JSONL, CSV, or a folder of images with one question for all.
 *
 * Each reader is an async generator in (near) constant memory. It yields one entry per
 * item: `{ ok: true, line, item }` for a valid item, or `{ ok: false, line, id?, field,
 * reason, message }` for a bad one. A bad line never stops the stream; only a
 * usage error (no such file, a folder without a question) throws.
 *
 * Image references are either `s3://bucket/key` or local paths, which must resolve inside
 * the image root (default: the manifest's folder), through symlinks too.
 */
import { createReadStream } from "node:fs";
import { opendir, realpath, stat } from "node:fs/promises";
import { dirname, extname, isAbsolute, relative, resolve, sep } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { z } from "zod";

// ---------------------------------------------------------------------------
// Types

export interface ManifestItem {
  id: string;
  /** Absolute real path of a local image, or an s3://bucket/key URI. */
  image: string;
  question: string;
  answer?: string;
  /** A label that groups items in `eval`'s per-family table; the fleet carries it along unused. */
  family?: string;
}

export type ManifestField = "id" | "image" | "question" | "answer" | "family" | "header" | "record";

export type ManifestEntry =
  | { ok: true; line: number; item: ManifestItem }
  | {
      ok: false;
      /** 1-based line (the first line of a multi-line CSV record; the position in sorted order for a folder). */
      line: number;
      id?: string;
      field: ManifestField;
      reason: string;
      /** One sentence naming the line, the item, the field and what was expected. */
      message: string;
    };

export type ManifestFormat = "jsonl" | "csv" | "folder";

export interface ManifestOptions {
  /** Folder that local image paths must resolve inside (default: the manifest's folder, or the image folder). */
  imageRoot?: string;
  /** Default: from the extension (.jsonl/.ndjson/.json → jsonl, .csv → csv) or "folder" for a directory. */
  format?: ManifestFormat;
  /** The question asked of every image (folder format only). */
  question?: string;
  /** Check that local images exist and are regular files (default true; needed to catch symlink escapes). */
  checkFiles?: boolean;
  /** CSV: a quoted field left open for more lines than this is reported as unterminated (default 200). */
  maxRecordLines?: number;
}

export const IMAGE_EXTENSIONS: readonly string[] = [".png", ".jpg", ".jpeg", ".webp", ".gif", ".tif", ".tiff", ".avif"];

// ---------------------------------------------------------------------------
// Field validation (zod)

const MAX_ID = 512;
const MAX_QUESTION = 8192;
const MAX_FAMILY = 64;

const scalarText = z.union([z.string(), z.number().finite()]).transform((v) => String(v).trim());

const FIELD_RULES = {
  id: {
    schema: scalarText.pipe(z.string().min(1).max(MAX_ID)),
    expected: `a non-empty string (or number) of at most ${MAX_ID} characters`,
  },
  image: {
    schema: z
      .string()
      .transform((s) => s.trim())
      .pipe(z.string().min(1)),
    expected: "a local image path or an s3://bucket/key URI",
  },
  question: {
    schema: z
      .string()
      .transform((s) => s.trim())
      .pipe(z.string().min(1).max(MAX_QUESTION)),
    expected: `a non-empty string of at most ${MAX_QUESTION} characters`,
  },
  answer: {
    schema: scalarText.pipe(z.string().max(MAX_QUESTION)),
    expected: `a string or number of at most ${MAX_QUESTION} characters`,
  },
  family: {
    schema: scalarText.pipe(z.string().max(MAX_FAMILY)),
    expected: `a string of at most ${MAX_FAMILY} characters`,
  },
} as const;

export const ManifestItemSchema = z.object({
  id: FIELD_RULES.id.schema,
  image: FIELD_RULES.image.schema,
  question: FIELD_RULES.question.schema,
  answer: FIELD_RULES.answer.schema.optional(),
  family: FIELD_RULES.family.schema.optional(),
});

function describeValue(v: unknown): string {
  if (v === undefined) return "missing";
  if (v === null) return "got null";
  if (typeof v === "string") {
    if (v.trim() === "") return "empty";
    const s = v.length > 60 ? `${v.slice(0, 57)}...` : v;
    return `got ${JSON.stringify(s)}${v.length > 60 ? ` (${v.length} characters)` : ""}`;
  }
  if (Array.isArray(v)) return "got an array";
  return `got ${typeof v === "object" ? "an object" : `${typeof v} ${String(v)}`}`;
}

function bad(line: number, field: ManifestField, reason: string, id?: string): ManifestEntry {
  const who = id !== undefined ? `item ${JSON.stringify(id)}` : "item";
  const where = field === "header" || field === "record" ? field : `field "${field}"`;
  return {
    ok: false,
    line,
    ...(id !== undefined ? { id } : {}),
    field,
    reason,
    message: `line ${line}, ${who}, ${where}: ${reason}`,
  };
}

/** Validate raw fields; image references resolved afterwards. */
async function validate(line: number, raw: Record<string, unknown>, images: ImageResolver): Promise<ManifestEntry> {
  const idR = FIELD_RULES.id.schema.safeParse(raw.id);
  const id = idR.success ? idR.data : undefined;
  if (!idR.success) return bad(line, "id", `${describeValue(raw.id)}; expected ${FIELD_RULES.id.expected}`);
  const out: Partial<ManifestItem> = { id };
  for (const field of ["image", "question", "answer", "family"] as const) {
    const v = raw[field];
    const optional = field === "answer" || field === "family";
    if (optional && (v === undefined || v === null || v === "")) continue;
    const r = FIELD_RULES[field].schema.safeParse(v);
    if (!r.success) return bad(line, field, `${describeValue(v)}; expected ${FIELD_RULES[field].expected}`, id);
    out[field] = r.data;
  }
  const img = await images.resolve(out.image!);
  if (!img.ok) return bad(line, "image", img.reason, id);
  out.image = img.image;
  return { ok: true, line, item: ManifestItemSchema.parse(out) as ManifestItem };
}

// ---------------------------------------------------------------------------
// Image references

export type ImageRefResult = { ok: true; image: string } | { ok: false; reason: string };

const S3_URI = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/;

/** Resolves image references against a root folder, confining local paths to it. */
export class ImageResolver {
  private realRoot: Promise<string> | undefined;
  readonly root: string;

  constructor(
    root: string,
    private readonly checkFiles = true,
  ) {
    this.root = resolve(root);
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
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) {
      return {
        ok: false,
        reason: `got ${JSON.stringify(ref)}; expected a local path inside ${this.root} or s3://bucket/key (other URL schemes are not fetched)`,
      };
    }
    if (ref.includes("\0")) return { ok: false, reason: "the path contains a NUL character" };
    const abs = resolve(this.root, ref);
    if (!inside(this.root, abs)) {
      return { ok: false, reason: `path ${JSON.stringify(ref)} escapes the image root ${this.root}` };
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
        reason: `path ${JSON.stringify(ref)} leads through a symlink to ${real}, outside the image root ${this.root}`,
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

// ---------------------------------------------------------------------------
// Line sources

function linesOf(input: Readable): AsyncIterable<string> {
  return createInterface({ input, crlfDelay: Infinity });
}

async function* numbered(lines: AsyncIterable<string>): AsyncGenerator<{ text: string; no: number }> {
  let no = 0;
  for await (const raw of lines) {
    no++;
    yield { text: no === 1 ? raw.replace(/^\uFEFF/, "") : raw, no };
  }
}

// ---------------------------------------------------------------------------
// JSONL

export async function* readJsonlLines(lines: AsyncIterable<string>, images: ImageResolver): AsyncGenerator<ManifestEntry> {
  for await (const { text, no } of numbered(lines)) {
    if (text.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      yield bad(no, "record", `invalid JSON (${(e as Error).message}); expected one JSON object per line`);
      continue;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      yield bad(no, "record", `${describeValue(value)}; expected a JSON object with id, image, question`);
      continue;
    }
    yield await validate(no, value as Record<string, unknown>, images);
  }
}

// ---------------------------------------------------------------------------
// CSV (RFC 4180: quoted fields may hold commas, doubled quotes and newlines)

export type CsvRecord = { ok: true; line: number; fields: string[] } | { ok: false; line: number; reason: string };

/**
 * Split lines into CSV records. A quoted field may span lines; one left open for more than
 * `maxRecordLines` lines (or to the end of input) is reported at the line it opened on, and
 * parsing resumes on the next line, so one stray quote cannot swallow the rest of the file.
 */
export async function* csvRecords(lines: AsyncIterable<string>, maxRecordLines = 200): AsyncGenerator<CsvRecord> {
  const it = numbered(lines)[Symbol.asyncIterator]();
  const replay: { text: string; no: number }[] = [];
  const next = async () => {
    if (replay.length > 0) return replay.shift();
    const r = await it.next();
    return r.done ? undefined : r.value;
  };

  for (;;) {
    const first = await next();
    if (first === undefined) return;
    if (first.text.trim() === "") continue;

    const consumed = [first];
    const st: CsvState = { fields: [], field: "", inQuotes: false, afterQuote: false, atStart: true };
    let error = parseCsvLine(st, first.text);
    while (error === undefined && st.inQuotes) {
      if (consumed.length >= maxRecordLines) {
        error = `a quoted field opened on line ${first.no} is still open after ${maxRecordLines} lines; expected a closing "`;
        break;
      }
      const more = await next();
      if (more === undefined) {
        error = `a quoted field opened on line ${first.no} is never closed; expected a closing "`;
        break;
      }
      consumed.push(more);
      st.field += "\n";
      error = parseCsvLine(st, more.text);
    }
    if (error !== undefined) {
      yield { ok: false, line: first.no, reason: error };
      replay.unshift(...consumed.slice(1));
      continue;
    }
    st.fields.push(st.field);
    yield { ok: true, line: first.no, fields: st.fields };
  }
}

interface CsvState {
  fields: string[];
  field: string;
  inQuotes: boolean;
  afterQuote: boolean;
  atStart: boolean;
}

/** Feed one physical line; returns an error reason or undefined. Leaves the last field open. */
function parseCsvLine(st: CsvState, line: string): string | undefined {
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (st.inQuotes) {
      if (ch === '"') {
        if (line[i + 1] === '"') {
          st.field += '"';
          i++;
        } else {
          st.inQuotes = false;
          st.afterQuote = true;
        }
      } else {
        st.field += ch;
      }
      continue;
    }
    if (ch === ",") {
      st.fields.push(st.field);
      st.field = "";
      st.afterQuote = false;
      st.atStart = true;
      continue;
    }
    if (st.afterQuote) {
      return `unexpected ${JSON.stringify(ch)} after the closing quote of field ${st.fields.length + 1}; expected a comma or the end of the line (write a quote inside a quoted field as "")`;
    }
    if (ch === '"' && st.atStart) {
      st.inQuotes = true;
      st.atStart = false;
      continue;
    }
    st.atStart = false;
    st.field += ch;
  }
  return undefined;
}

export async function* readCsvLines(
  lines: AsyncIterable<string>,
  images: ImageResolver,
  maxRecordLines = 200,
): AsyncGenerator<ManifestEntry> {
  let columns: string[] | undefined;
  for await (const rec of csvRecords(lines, maxRecordLines)) {
    if (!columns) {
      if (!rec.ok) {
        yield bad(rec.line, "header", `${rec.reason}; expected a header row id,image,question[,answer,family]`);
        return;
      }
      const names = rec.fields.map((f) => f.trim().toLowerCase());
      const missing = ["id", "image", "question"].filter((c) => !names.includes(c));
      const dup = names.find((n, i) => n !== "" && names.indexOf(n) !== i);
      if (missing.length > 0 || dup !== undefined) {
        const problem =
          missing.length > 0
            ? `missing column${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`
            : `column "${dup}" appears twice`;
        yield bad(
          rec.line,
          "header",
          `${problem} in header ${JSON.stringify(rec.fields.join(","))}; expected a header row id,image,question[,answer,family]`,
        );
        return;
      }
      columns = names;
      continue;
    }
    if (!rec.ok) {
      yield bad(rec.line, "record", rec.reason);
      continue;
    }
    if (rec.fields.length !== columns.length) {
      const idAt = columns.indexOf("id");
      const idGuess = rec.fields[idAt]?.trim();
      yield bad(
        rec.line,
        "record",
        `found ${rec.fields.length} field${rec.fields.length === 1 ? "" : "s"}; expected ${columns.length} (${columns.join(",")}) — quote fields that contain commas`,
        idGuess ? idGuess : undefined,
      );
      continue;
    }
    const raw: Record<string, unknown> = {};
    columns.forEach((c, i) => {
      if (c === "id" || c === "image" || c === "question" || c === "answer" || c === "family") raw[c] = rec.fields[i];
    });
    yield await validate(rec.line, raw, images);
  }
  if (!columns) yield bad(1, "header", "the file is empty; expected a header row id,image,question[,answer,family]");
}

// ---------------------------------------------------------------------------
// Folder of images

export async function* readImageFolder(
  folder: string,
  question: string,
  opts: Pick<ManifestOptions, "imageRoot" | "checkFiles"> = {},
): AsyncGenerator<ManifestEntry> {
  const q = FIELD_RULES.question.schema.safeParse(question);
  if (!q.success) {
    throw new Error(`a folder of images needs one question for all images: ${FIELD_RULES.question.expected}`);
  }
  const images = new ImageResolver(opts.imageRoot ?? folder, opts.checkFiles ?? true);
  const names: string[] = [];
  for await (const d of await opendir(folder)) {
    if (d.name.startsWith(".")) continue;
    if (!(d.isFile() || d.isSymbolicLink())) continue;
    if (!IMAGE_EXTENSIONS.includes(extname(d.name).toLowerCase())) continue;
    names.push(d.name);
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const seen = new Map<string, string>();
  let no = 0;
  for (const name of names) {
    no++;
    const id = name.slice(0, name.length - extname(name).length);
    const prev = seen.get(id);
    if (prev !== undefined) {
      yield bad(no, "id", `file ${name} gives the same id as ${prev}; expected one image per file name stem`, id);
      continue;
    }
    seen.set(id, name);
    yield await validate(no, { id, image: resolve(folder, name), question: q.data }, images);
  }
}

// ---------------------------------------------------------------------------
// Entry point

export function detectFormat(path: string): ManifestFormat | undefined {
  const ext = extname(path).toLowerCase();
  if (ext === ".jsonl" || ext === ".ndjson" || ext === ".json") return "jsonl";
  if (ext === ".csv") return "csv";
  return undefined;
}

/** Read a manifest file (JSONL or CSV) or a folder of images. */
export async function* readManifest(source: string, opts: ManifestOptions = {}): AsyncGenerator<ManifestEntry> {
  const st = await stat(source).catch((e: NodeJS.ErrnoException) => {
    throw new Error(e.code === "ENOENT" ? `manifest not found: ${source}` : `cannot read manifest ${source}: ${e.message}`);
  });
  if (st.isDirectory() || opts.format === "folder") {
    if (opts.question === undefined) {
      throw new Error(`${source} is a folder: give the question to ask of every image`);
    }
    yield* readImageFolder(source, opts.question, opts);
    return;
  }
  const format = opts.format ?? detectFormat(source);
  if (format === undefined || format === "folder") {
    throw new Error(`cannot tell the format of ${source} from its extension; expected .jsonl or .csv, or name the format`);
  }
  const images = new ImageResolver(opts.imageRoot ?? dirname(resolve(source)), opts.checkFiles ?? true);
  yield* readManifestStream(createReadStream(source), format, images, opts.maxRecordLines);
}

/** Read JSONL or CSV from any stream (stdin, an S3 body) with an explicit image resolver. */
export async function* readManifestStream(
  input: Readable,
  format: "jsonl" | "csv",
  images: ImageResolver,
  maxRecordLines?: number,
): AsyncGenerator<ManifestEntry> {
  const lines = linesOf(input);
  try {
    yield* format === "csv" ? readCsvLines(lines, images, maxRecordLines) : readJsonlLines(lines, images);
  } finally {
    input.destroy();
  }
}
