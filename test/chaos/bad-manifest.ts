/**
 * The fuzzed manifest of the bad-input scenario, generated from a seed (nothing big is
 * committed): good lines (the scene set, and odd but valid ids) shuffled among several hundred
 * bad ones — broken JSON, wrong types, missing and oversized fields, corrupt, truncated,
 * empty and non-image files, decompression bombs, huge (sparse) files, path traversal,
 * symlinks out of the root, dangling and looping, fifos, folders, bad and foreign URIs,
 * duplicate ids, and (a good line) an id crafted to equal another's item key.
 *
 * Each line says what it is and, for a bad line, the field its failure record must name:
 * that expectation is fixed by how the line was made, not read back from the fleet.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdir, readFile, symlink, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { crc32, deflateSync } from "node:zlib";
import { toItemId } from "../../shared/core/ids.ts";
import { createRng, type Rng } from "../../shared/core/random.ts";
import type { SceneItem } from "./chaos-kit.ts";

export interface FixtureLine {
  /** 1-based line of the manifest. */
  line: number;
  kind: string;
  /** For a good line: the item, whose answer must equal the reference. */
  good?: SceneItem;
  /** For a bad line: the field its failure record must name. */
  field?: string;
}

export interface BadManifest {
  manifest: string;
  lines: FixtureLine[];
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A well-formed 8-bit grey PNG of `width` × `height` zero pixels, or of just its first `rows` rows. */
function greyPng(width: number, height: number, rows = height): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grey
  const raw = Buffer.alloc((width + 1) * rows); // filter byte 0 and zero pixels on every row
  return Buffer.concat([
    PNG_SIGNATURE,
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw, { level: 9 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Where the first IDAT chunk's data starts and ends. */
function idatRange(png: Buffer): [number, number] {
  let at = 8;
  while (at < png.length) {
    const len = png.readUInt32BE(at);
    if (png.toString("latin1", at + 4, at + 8) === "IDAT") return [at + 8, at + 8 + len];
    at += 12 + len;
  }
  throw new Error("no IDAT chunk");
}

const question = "What is in the picture?";

interface Made {
  kind: string;
  field: string;
  /** The manifest line's text. */
  text: string;
}

type Maker = (ctx: { n: number; rng: Rng; dir: string; good: SceneItem; png: Buffer }) => Promise<Made> | Made;

const line = (fields: Record<string, unknown>) => JSON.stringify(fields);
const rel = (dir: string, path: string) => path.slice(dir.length + 1);

/** One maker per kind of bad line; `n` numbers the line among the bad ones, so names never clash. */
const MAKERS: Maker[] = [
  ({ n, rng }) => ({
    kind: "invalid JSON",
    field: "record",
    text: rng.pick([
      `{"id": "bad-${n}", "image": "x.png"`,
      "not json at all",
      `{'id': 'bad-${n}'}`,
      `{"id": "bad-${n}",}`,
      `{"id": "bad-${n}"} trailing`,
      `{"id": "bad-${n}", "question": "a\u0000b`,
    ]),
  }),
  ({ rng }) => ({
    kind: "JSON that is not an object",
    field: "record",
    text: rng.pick(["[1, 2]", "null", '"a string"', "42", "true"]),
  }),
  ({ rng, dir, good }) => {
    const base = { image: rel(dir, good.imagePath), question };
    const id = rng.pick<unknown>([undefined, null, "", "   ", {}, [], true, "x".repeat(600)]);
    return { kind: "bad id", field: "id", text: line(id === undefined ? base : { id, ...base }) };
  },
  ({ n, rng }) => {
    const image = rng.pick<unknown>([undefined, null, "", 5, {}, ["a.png"]]);
    return {
      kind: "bad image field",
      field: "image",
      text: line({ id: `bad-${n}`, ...(image === undefined ? {} : { image }), question }),
    };
  },
  ({ n, rng, dir, good }) => {
    const q = rng.pick<unknown>([undefined, null, "", "  ", 7, ["why?"], "q".repeat(9000)]);
    return {
      kind: "bad question",
      field: "question",
      text: line({ id: `bad-${n}`, image: rel(dir, good.imagePath), ...(q === undefined ? {} : { question: q }) }),
    };
  },
  ({ n, rng, dir, good }) => ({
    kind: "bad answer",
    field: "answer",
    text: line({
      id: `bad-${n}`,
      image: rel(dir, good.imagePath),
      question,
      answer: rng.pick<unknown>([{}, [1], true, "a".repeat(9000)]),
    }),
  }),
  ({ n, rng, dir, good }) => ({
    kind: "bad family",
    field: "family",
    text: line({
      id: `bad-${n}`,
      image: rel(dir, good.imagePath),
      question,
      family: rng.pick<unknown>([{}, false, "f".repeat(100)]),
    }),
  }),
  ({ n, rng }) => ({
    kind: "path traversal",
    field: "image",
    text: line({
      id: `bad-${n}`,
      image: rng.pick([
        "../outside.png",
        "../../../../../../etc/passwd",
        "scenes/../../outside.png",
        "/etc/hostname",
        "file:///etc/passwd",
        "images/a\u0000.png",
      ]),
      question,
    }),
  }),
  ({ n, rng }) => ({
    kind: "bad URI",
    field: "image",
    text: line({
      id: `bad-${n}`,
      image: rng.pick([
        "http://example.com/a.png",
        "https://example.com/a.png",
        "ftp://example.com/a.png",
        "gopher://example.com/a.png",
        "s3://",
        "s3://Bad_Bucket/a.png",
        "s3://stagebeam",
        "data:image/png;base64,@@@@",
        "data:text/plain;base64,aGVsbG8=",
        "file://remote-host/a.png",
      ]),
      question,
    }),
  }),
  // Well-formed s3:// URIs of objects that do not exist: refused in the fleet, by the worker.
  ({ n }) => ({
    kind: "missing S3 object",
    field: "image",
    text: line({ id: `bad-${n}`, image: `s3://stagebeam/nothing/${n}.png`, question }),
  }),
  async ({ n, rng, dir }) => {
    const path = join(dir, "images", `link-${n}.png`);
    const how = rng.pick(["out of the root", "dangling", "loop"]);
    if (how === "out of the root") await symlink(join(dir, "..", "outside.png"), path);
    else if (how === "dangling") await symlink(join(dir, "images", `gone-${n}.png`), path);
    else {
      await symlink(join(dir, "images", `loop-${n}.png`), path);
      await symlink(path, join(dir, "images", `loop-${n}.png`));
    }
    return { kind: "symlink", field: "image", text: line({ id: `bad-${n}`, image: rel(dir, path), question }) };
  },
  async ({ n, dir }) => {
    const path = join(dir, "images", `fifo-${n}.png`);
    await promisify(execFile)("mkfifo", [path]);
    return { kind: "fifo", field: "image", text: line({ id: `bad-${n}`, image: rel(dir, path), question }) };
  },
  ({ n, rng }) => ({
    kind: "missing file or a folder",
    field: "image",
    text: line({ id: `bad-${n}`, image: rng.pick([`images/nope-${n}.png`, "images", "scenes/"]), question }),
  }),
  async ({ n, rng, dir, png }) => {
    const path = join(dir, "images", `bytes-${n}.png`);
    const what = rng.pick(["empty", "truncated", "corrupt", "text", "random bytes", "header only"]);
    let bytes: Buffer;
    if (what === "empty") bytes = Buffer.alloc(0);
    else if (what === "truncated") bytes = png.subarray(0, Math.floor(png.length * (0.1 + 0.75 * rng.next())));
    else if (what === "corrupt") {
      // Bytes overwritten inside the image data: the chunk's CRC no longer matches.
      bytes = Buffer.from(png);
      const [from, to] = idatRange(bytes);
      const at = rng.int(from, to - 17);
      for (let i = 0; i < 16; i++) bytes[at + i] = rng.int(0, 255);
    } else if (what === "text") bytes = Buffer.from(`not an image ${n}\n`);
    else if (what === "random bytes") bytes = Buffer.from(Array.from({ length: 2048 }, () => rng.int(0, 255)));
    else bytes = png.subarray(0, 33); // signature and IHDR, no data
    await writeFile(path, bytes);
    return { kind: `image: ${what}`, field: "image", text: line({ id: `bad-${n}`, image: rel(dir, path), question }) };
  },
  async ({ n, rng, dir }) => {
    const path = join(dir, "images", `bomb-${n}.png`);
    // 64 Mpx of zeros in ~64 KB (whole), or a header claiming 3.6 Gpx over a few rows.
    const whole = rng.chance(0.5);
    await writeFile(path, whole ? greyPng(8000, 8000) : greyPng(60_000, 60_000, 4));
    return {
      kind: `decompression bomb (${whole ? "whole" : "header"})`,
      field: "image",
      text: line({ id: `bad-${n}`, image: rel(dir, path), question }),
    };
  },
  async ({ n, dir, png }) => {
    const path = join(dir, "images", `huge-${n}.png`);
    // A valid PNG followed by a 300 MiB hole: sparse, so it takes no disk.
    await writeFile(path, png);
    await truncate(path, 300 * 2 ** 20);
    return { kind: "huge file", field: "image", text: line({ id: `bad-${n}`, image: rel(dir, path), question }) };
  },
  ({ n, png }) => ({
    kind: "data: URL of a truncated image",
    field: "image",
    text: line({
      id: `bad-${n}`,
      image: `data:image/png;base64,${png.subarray(0, png.length >> 1).toString("base64")}`,
      question,
    }),
  }),
];

/** Valid but unusual ids: each is a good item. */
const ODD_IDS = ["ид-🙂-unicode", "with/slash and spaces", "y".repeat(300), "  trimmed  ", 12345];

/**
 * Writes `dir/manifest.jsonl` (images under `dir`, the image root): `good` items with their own
 * ids, the odd ids on good images, an exact duplicate, an id equal to another's key, and `bad`
 * bad lines.
 */
export async function writeBadManifest(dir: string, good: readonly SceneItem[], bad: number, seed: number): Promise<BadManifest> {
  const rng = createRng(seed);
  await mkdir(join(dir, "images"), { recursive: true });
  const png = await readFile(good[0]!.imagePath);
  await copyFile(good[0]!.imagePath, join(dir, "..", "outside.png"));
  const entries: { kind: string; text: string; good?: SceneItem; field?: string }[] = [];
  for (const g of good)
    entries.push({ kind: "good", text: line({ id: g.id, image: rel(dir, g.imagePath), question: g.question }), good: g });
  for (const [i, id] of ODD_IDS.entries()) {
    const g = good[i % good.length]!;
    const item = { id: String(id).trim(), imagePath: g.imagePath, question: g.question };
    entries.push({ kind: "good, odd id", text: line({ id, image: rel(dir, g.imagePath), question: g.question }), good: item });
  }
  for (let n = 0; n < bad; n++) {
    const made = await MAKERS[n % MAKERS.length]!({ n, rng, dir, good: rng.pick(good), png });
    entries.push(made);
  }
  const ordered = rng.shuffle(entries);
  // Duplicates go after the line they repeat, so which line is first is known.
  const first = good[0]!;
  // An id crafted to equal the key stagebeam made for another (odd) id: a good item of its own,
  // since a made key holds a `~`, which no id keeps as it is (shared/core/ids.ts).
  const crafted = { id: toItemId("with/slash and spaces"), imagePath: first.imagePath, question: first.question };
  ordered.push(
    { kind: "duplicate id", field: "id", text: line({ id: first.id, image: rel(dir, first.imagePath), question }) },
    {
      kind: "good, id equal to another id's item key",
      text: line({ id: crafted.id, image: rel(dir, crafted.imagePath), question: crafted.question }),
      good: crafted,
    },
  );
  const manifest = join(dir, "manifest.jsonl");
  await writeFile(manifest, `${ordered.map((e) => e.text).join("\n")}\n`);
  return {
    manifest,
    lines: ordered.map((e, i) => ({
      line: i + 1,
      kind: e.kind,
      ...(e.good ? { good: e.good } : {}),
      ...(e.field ? { field: e.field } : {}),
    })),
  };
}
