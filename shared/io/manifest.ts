/**
 * Streaming manifest readers: JSONL (stagebeam's own lines or the OpenAI batch format, see
 * openai-batch.ts), CSV (csv-parse), or a folder of images with one question for all.
 *
 * Each reader is an async generator in (near) constant memory. It yields one entry per
 * item: `{ ok: true, line, item }` for a valid item, or `{ ok: false, line, id?, field,
 * reason, message }` for a bad one. A bad line never stops the stream; only a
 * usage error (no such file, a folder without a question) throws.
 *
 * Image references are `s3://bucket/key`, `data:` URLs, or local paths (or file:// URLs),
 * which must resolve inside the image root (default: the manifest's folder), through symlinks
 * too (image-refs.ts).
 */
import { createReadStream } from "node:fs";
import { opendir, stat } from "node:fs/promises";
import { dirname, extname, resolve } from "node:path";
import type { Readable } from "node:stream";
import { parse as parseCsvSync } from "csv-parse/sync";
import { z } from "zod";
import { ImageResolver } from "./image-refs.ts";
import { linesOf, numbered } from "./lines.ts";
import { isOpenAIBatchLine, parseOpenAIBatchLine, type LineSettings } from "./openai-batch.ts";

export { ImageResolver, type ImageRefResult } from "./image-refs.ts";

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
  /** Settings the line asks for (OpenAI batch lines); the run checks them against its own. */
  settings?: LineSettings;
}

/** id, image, question, answer, family, header, record, or a path in an OpenAI batch line (body.seed). */
export type ManifestField = string;

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
  /**
   * Folder that local image paths must resolve inside, through symlinks too (default: the
   * manifest's folder, or the image folder); relative paths still resolve against the manifest's folder.
   */
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
  const who = id !== undefined ? `item ${JSON.stringify(id)}, ` : "";
  const where = field === "header" || field === "record" ? field : `field "${field}"`;
  return {
    ok: false,
    line,
    ...(id !== undefined ? { id } : {}),
    field,
    reason,
    message: `line ${line}, ${who}${where}: ${reason}`,
  };
}

/** Validate raw fields; image references resolved afterwards. */
async function validate(
  line: number,
  raw: Record<string, unknown>,
  images: ImageResolver,
  { settings, imageField = "image" }: { settings?: LineSettings; imageField?: string } = {},
): Promise<ManifestEntry> {
  const idR = FIELD_RULES.id.schema.safeParse(raw.id);
  const id = idR.success ? idR.data : undefined;
  if (!idR.success) return bad(line, "id", `${describeValue(raw.id)}; expected ${FIELD_RULES.id.expected}`);
  const out: Partial<ManifestItem> = { id };
  for (const field of ["image", "question", "answer", "family"] as const) {
    const v = raw[field];
    const optional = field === "answer" || field === "family";
    if (optional && (v === undefined || v === null || v === "")) continue;
    const r = FIELD_RULES[field].schema.safeParse(v);
    if (!r.success)
      return bad(
        line,
        field === "image" ? imageField : field,
        `${describeValue(v)}; expected ${FIELD_RULES[field].expected}`,
        id,
      );
    out[field] = r.data;
  }
  const img = await images.resolve(out.image!);
  if (!img.ok) return bad(line, imageField, img.reason, id);
  out.image = img.image;
  const item = ManifestItemSchema.parse(out) as ManifestItem;
  return { ok: true, line, item: settings && Object.keys(settings).length > 0 ? { ...item, settings } : item };
}

const OPENAI_IMAGE_FIELD = "body.messages[0].content.image_url.url";

/** An OpenAI batch line, checked field by field, then validated as an item. */
function validateOpenAI(
  line: number,
  value: Record<string, unknown>,
  images: ImageResolver,
): Promise<ManifestEntry> | ManifestEntry {
  const r = parseOpenAIBatchLine(value);
  if (!r.ok) return bad(line, r.field, `${describeValue(r.got)}; expected ${r.expected}`, r.id);
  return validate(line, { id: r.id, image: r.image, question: r.question }, images, {
    settings: r.settings,
    imageField: OPENAI_IMAGE_FIELD,
  });
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
    const fields = value as Record<string, unknown>;
    yield await (isOpenAIBatchLine(fields) ? validateOpenAI(no, fields, images) : validate(no, fields, images));
  }
}

const CSV_HEADER = "a header row id,image,question[,answer,family]";

export type CsvRecord = { ok: true; line: number; fields: string[] } | { ok: false; line: number; reason: string };

/** Whether a quoted field is still open at the end of `text` (open at its start: `open`). */
function quoteOpenAfter(text: string, open: boolean): boolean {
  let atFieldStart = !open;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (open) {
      if (ch === '"') {
        if (text[i + 1] === '"') i++;
        else open = false;
      }
    } else if (ch === '"' && atFieldStart) {
      open = true;
    }
    atFieldStart = !open && ch === ",";
  }
  return open;
}

/**
 * CSV records from lines (RFC 4180, parsed by csv-parse: quoted fields may hold commas,
 * doubled quotes and newlines). A record goes on to the next line while a quote is open; one
 * left open for more than `maxRecordLines` lines (or to the end) is reported at the line it
 * opened on and reading resumes on the next line, so one stray quote cannot swallow the file.
 */
export async function* csvRecords(lines: AsyncIterable<string>, maxRecordLines = 200): AsyncGenerator<CsvRecord> {
  const it = numbered(lines)[Symbol.asyncIterator]();
  const replay: { text: string; no: number }[] = [];
  const next = async () => replay.shift() ?? ((r) => (r.done ? undefined : r.value))(await it.next());
  for (;;) {
    const first = await next();
    if (first === undefined) return;
    if (first.text.trim() === "") continue;
    const consumed = [first];
    let open = quoteOpenAfter(first.text, false);
    let error: string | undefined;
    while (open) {
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
      open = quoteOpenAfter(more.text, true);
    }
    if (error !== undefined) {
      yield { ok: false, line: first.no, reason: error };
      replay.unshift(...consumed.slice(1));
      continue;
    }
    try {
      const [fields] = parseCsvSync(consumed.map((c) => c.text).join("\n"), { relax_column_count: true }) as string[][];
      yield { ok: true, line: first.no, fields: fields ?? [] };
    } catch (err) {
      yield {
        ok: false,
        line: first.no,
        reason: `${(err as Error).message.replace(/ at line \d+/, "")}; expected RFC 4180 CSV (write a quote inside a quoted field as "")`,
      };
    }
  }
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
        yield bad(rec.line, "header", `${rec.reason}; expected ${CSV_HEADER}`);
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
        yield bad(rec.line, "header", `${problem} in header ${JSON.stringify(rec.fields.join(","))}; expected ${CSV_HEADER}`);
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
      const idGuess = rec.fields[columns.indexOf("id")]?.trim();
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
  if (!columns) yield bad(1, "header", `the file is empty; expected ${CSV_HEADER}`);
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
  const folder = dirname(resolve(source));
  const images = new ImageResolver(opts.imageRoot ?? folder, opts.checkFiles ?? true, folder);
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
