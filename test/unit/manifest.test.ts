import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageResolver, csvRecords, readManifest, readManifestStream, type ManifestEntry } from "../../shared/io/manifest.ts";

let root: string; // real path of a temp folder holding images and manifests
let outside: string;

async function collect<T>(gen: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of gen) out.push(x);
  return out;
}

async function* fromLines(text: string): AsyncGenerator<string> {
  for (const l of text.split("\n")) yield l;
}

const failures = (es: ManifestEntry[]) => es.filter((e) => !e.ok);

beforeAll(async () => {
  const base = await realpath(await mkdtemp(join(tmpdir(), "sb-manifest-")));
  root = join(base, "root");
  outside = join(base, "outside");
  await mkdir(join(root, "imgs"), { recursive: true });
  await mkdir(outside);
  for (const n of ["a.png", "b.png", "c.jpg"]) await writeFile(join(root, "imgs", n), "x");
  await writeFile(join(outside, "secret.png"), "x");
  await symlink(join(outside, "secret.png"), join(root, "imgs", "escape.png"));
  await symlink(join(root, "imgs", "a.png"), join(root, "imgs", "alias.png"));
  await mkdir(join(root, "imgs", "sub.png")); // a directory with an image-like name
});

afterAll(async () => {
  await rm(join(root, ".."), { recursive: true, force: true });
});

describe("JSONL manifests", () => {
  it("yields valid items and reports bad lines with line numbers, without stopping", async () => {
    const lines = [
      JSON.stringify({ id: "q1", image: "imgs/a.png", question: "How many red objects?", answer: "3" }),
      "",
      JSON.stringify({ id: 7, image: "imgs/b.png", question: "  Is there a circle? " }),
      "{not json",
      JSON.stringify({ id: "q3", image: "imgs/a.png" }),
      JSON.stringify({ id: "", image: "imgs/a.png", question: "q" }),
      JSON.stringify([1, 2]),
      JSON.stringify({ id: "q4", image: "s3://bucket-1/images/x.png", question: "What color?", answer: 2 }),
      JSON.stringify({ id: "q5", image: 42, question: "q" }),
      JSON.stringify({ id: "q6", image: "imgs/missing.png", question: "q" }),
    ].join("\n");
    await writeFile(join(root, "m.jsonl"), lines);
    const es = await collect(readManifest(join(root, "m.jsonl")));
    expect(es.map((e) => [e.line, e.ok])).toEqual([
      [1, true],
      [3, true],
      [4, false],
      [5, false],
      [6, false],
      [7, false],
      [8, true],
      [9, false],
      [10, false],
    ]);
    expect(es[0]).toEqual({
      ok: true,
      line: 1,
      item: { id: "q1", image: join(root, "imgs/a.png"), question: "How many red objects?", answer: "3" },
    });
    expect(es[1]).toMatchObject({ ok: true, item: { id: "7", question: "Is there a circle?" } });
    expect(es[1]!.ok && es[1]!.item.answer).toBe(undefined);
    expect(es[2]).toMatchObject({ ok: false, line: 4, field: "record" });
    expect(es[2]!.ok ? "" : es[2]!.reason).toMatch(/^invalid JSON/);
    expect(es[3]).toMatchObject({
      ok: false,
      line: 5,
      id: "q3",
      field: "question",
      reason: "missing; expected a non-empty string of at most 8192 characters",
    });
    expect(es[3]!.ok ? "" : es[3]!.message).toBe(
      'line 5, item "q3", field "question": missing; expected a non-empty string of at most 8192 characters',
    );
    expect(es[4]).toMatchObject({ field: "id", reason: expect.stringMatching(/^empty; expected a non-empty string/) });
    expect(es[4]!.ok || es[4]!.id).toBe(undefined);
    expect(es[5]).toMatchObject({ field: "record", reason: "got an array; expected a JSON object with id, image, question" });
    expect(es[6]).toMatchObject({ ok: true, item: { image: "s3://bucket-1/images/x.png", answer: "2" } });
    expect(es[7]).toMatchObject({ id: "q5", field: "image", reason: expect.stringMatching(/^got number 42; expected/) });
    expect(es[8]).toMatchObject({ id: "q6", field: "image", reason: `file not found: ${join(root, "imgs/missing.png")}` });
  });

  it("handles CRLF line endings and a BOM", async () => {
    await writeFile(
      join(root, "crlf.jsonl"),
      "\uFEFF" +
        JSON.stringify({ id: "a", image: "imgs/a.png", question: "q" }) +
        "\r\n" +
        JSON.stringify({ id: "b", image: "imgs/b.png", question: "q" }) +
        "\r\n",
    );
    const es = await collect(readManifest(join(root, "crlf.jsonl")));
    expect(es.map((e) => e.ok && e.item.id)).toEqual(["a", "b"]);
  });
});

describe("image path confinement", () => {
  const r = () => new ImageResolver(root);

  it("accepts paths inside the root, relative or absolute, and symlinks that stay inside", async () => {
    expect(await r().resolve("imgs/a.png")).toEqual({ ok: true, image: join(root, "imgs/a.png") });
    expect(await r().resolve(join(root, "imgs/b.png"))).toEqual({ ok: true, image: join(root, "imgs/b.png") });
    expect(await r().resolve("imgs/../imgs/c.jpg")).toEqual({ ok: true, image: join(root, "imgs/c.jpg") });
    expect(await r().resolve("imgs/alias.png")).toEqual({ ok: true, image: join(root, "imgs/a.png") });
  });

  it("rejects .. escapes, absolute paths outside, symlinks out, directories and other schemes", async () => {
    const escaped = await r().resolve("../outside/secret.png");
    expect(escaped).toEqual({
      ok: false,
      reason: `path "../outside/secret.png" escapes the image root ${root} (--image-root DIR widens it)`,
    });
    expect(await r().resolve(join(outside, "secret.png"))).toMatchObject({
      ok: false,
      reason: expect.stringContaining("escapes the image root"),
    });
    expect(await r().resolve("..")).toMatchObject({ ok: false });
    expect(await r().resolve(".")).toMatchObject({ ok: false });
    expect(await r().resolve("imgs/escape.png")).toEqual({
      ok: false,
      reason: `path "imgs/escape.png" leads through a symlink to ${join(outside, "secret.png")}, outside the image root ${root} (--image-root DIR widens it)`,
    });
    expect(await r().resolve("imgs/sub.png")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("is not a regular file"),
    });
    expect(await r().resolve("https://example.com/a.png")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("http(s) images are not fetched: stage the image in S3 (s3://bucket/key) or inline it"),
    });
    expect(await r().resolve("ftp://example.com/a.png")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("other URL schemes"),
    });
    expect(await r().resolve("file:///etc/passwd")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("escapes the image root"),
    });
    expect(await r().resolve("data:text/plain;base64,aGk=")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("expected data:image/<png|jpeg|webp|gif|tiff|avif>;base64,<base64>"),
    });
    expect(await r().resolve("s3://Bad_Bucket/x.png")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("expected s3://bucket/key"),
    });
    expect(await r().resolve("s3://bucket-1/")).toMatchObject({ ok: false });
  });

  it("accepts file:// URLs inside the root and data: image URLs", async () => {
    expect(await r().resolve(`file://${join(root, "imgs/a.png")}`)).toEqual({ ok: true, image: join(root, "imgs/a.png") });
    const data = "data:image/png;base64,iVBORw0KGgo=";
    expect(await r().resolve(data)).toEqual({ ok: true, image: data });
  });

  it("with a wider root, resolves relative paths against the manifest's folder and follows symlinks into the root", async () => {
    const wide = new ImageResolver(dirname(root), true, join(root, "imgs"));
    expect(await wide.resolve("a.png")).toEqual({ ok: true, image: join(root, "imgs/a.png") });
    expect(await wide.resolve("escape.png")).toEqual({ ok: true, image: join(outside, "secret.png") });
    expect(await wide.resolve("../../../x.png")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("escapes the image root"),
    });
  });

  it("without file checks, still confines lexically", async () => {
    const lex = new ImageResolver(root, false);
    expect(await lex.resolve("imgs/not-yet.png")).toEqual({ ok: true, image: join(root, "imgs/not-yet.png") });
    expect(await lex.resolve("../x.png")).toMatchObject({ ok: false });
  });
});

describe("OpenAI batch lines", () => {
  const line = (body: Record<string, unknown> = {}, top: Record<string, unknown> = {}) =>
    JSON.stringify({
      custom_id: "req-1",
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "m",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "How many" },
              { type: "image_url", image_url: { url: "imgs/a.png" } },
              { type: "text", text: "red objects?" },
            ],
          },
        ],
        ...body,
      },
      ...top,
    });

  it("reads the question, the image and the settings a line asks for", async () => {
    const [e] = await collect(
      readManifestStream(
        Readable.from([line({ seed: 4, max_tokens: 64, stagebeam: { strategy: "stage", beam: 2, judge: "score" } })]),
        "jsonl",
        new ImageResolver(root),
      ),
    );
    expect(e).toEqual({
      ok: true,
      line: 1,
      item: {
        id: "req-1",
        image: join(root, "imgs/a.png"),
        question: "How many\nred objects?",
        settings: { seed: 4, maxStageTokens: 64, strategy: "stage", beam: 2, judgeMode: "score" },
      },
    });
  });

  it("names the field, what was expected and what it got, once per bad line", async () => {
    const lines = [
      line({}, { method: "GET" }),
      line({ temperature: 0.2 }),
      line({ messages: [{ role: "system", content: "x" }] }),
      line({ stagebeam: { beam: 0 } }),
      line({ stagebeam: { width: 3 } }),
    ].join("\n");
    const es = await collect(readManifestStream(Readable.from([lines]), "jsonl", new ImageResolver(root)));
    expect(es.map((e) => (e.ok ? "ok" : e.message))).toEqual([
      'line 1, item "req-1", field "method": got "GET"; expected "POST"',
      'line 2, item "req-1", field "body.temperature": got number 0.2; expected no value: stagebeam samples with the model\'s own temperature and top_p',
      'line 3, item "req-1", field "body.messages[0].role": got "system"; expected "user"',
      'line 4, item "req-1", field "body.stagebeam.beam": got number 0; expected an integer >= 1',
      'line 5, item "req-1", field "body.stagebeam.width": got number 3; expected no such field (strategy, beam, judge)',
    ]);
  });
});

describe("CSV records", () => {
  it("parses quoted fields with commas, doubled quotes and newlines", async () => {
    const text = ['a,"b,c","say ""hi""",', '"multi', 'line, with ""quotes""",x', "", "plain,y"].join("\n");
    const recs = await collect(csvRecords(fromLines(text)));
    expect(recs).toEqual([
      { ok: true, line: 1, fields: ["a", "b,c", 'say "hi"', ""] },
      { ok: true, line: 2, fields: ['multi\nline, with "quotes"', "x"] },
      { ok: true, line: 5, fields: ["plain", "y"] },
    ]);
  });

  it("reports a character after a closing quote, or a quote inside a bare field, and resumes on the next line", async () => {
    const recs = await collect(csvRecords(fromLines('"ab"c,d\ne,f\nplain"quote,y\ng,h')));
    expect(recs.map((r) => [r.line, r.ok])).toEqual([
      [1, false],
      [2, true],
      [3, false],
      [4, true],
    ]);
    expect(recs[0]).toMatchObject({ reason: expect.stringMatching(/^Invalid Closing Quote: got "c" instead of delimiter/) });
    expect(recs[2]).toMatchObject({ reason: expect.stringMatching(/^Invalid Opening Quote: a quote is found on field 0/) });
    expect(recs[1]).toEqual({ ok: true, line: 2, fields: ["e", "f"] });
  });

  it("an unclosed quote does not swallow the rest of the file", async () => {
    const recs = await collect(csvRecords(fromLines('a,"open\nb,c\nd,e'), 200));
    expect(recs).toEqual([
      { ok: false, line: 1, reason: 'a quoted field opened on line 1 is never closed; expected a closing "' },
      { ok: true, line: 2, fields: ["b", "c"] },
      { ok: true, line: 3, fields: ["d", "e"] },
    ]);
    const capped = await collect(csvRecords(fromLines('a,"open\nb,c\nd,e\nf,g'), 2));
    expect(capped.map((r) => [r.line, r.ok])).toEqual([
      [1, false],
      [2, true],
      [3, true],
      [4, true],
    ]);
  });
});

describe("CSV manifests", () => {
  it("maps columns by header name, validates rows, keeps going after bad rows", async () => {
    const csv = [
      "question,ID,image,answer,notes",
      '"How many red objects, in total?",q1,imgs/a.png,3,ok',
      'Is there a circle?,q2,imgs/b.png,,"said ""maybe"""',
      "too,few,fields",
      ",q4,imgs/a.png,,",
      '"Multi',
      'line question",q5,imgs/c.jpg,no,',
      "What?,q6,../outside/secret.png,,",
    ].join("\r\n");
    await writeFile(join(root, "m.csv"), csv);
    const es = await collect(readManifest(join(root, "m.csv")));
    expect(es.map((e) => [e.line, e.ok])).toEqual([
      [2, true],
      [3, true],
      [4, false],
      [5, false],
      [6, true],
      [8, false],
    ]);
    expect(es[0]).toMatchObject({ item: { id: "q1", question: "How many red objects, in total?", answer: "3" } });
    expect(es[1]!.ok && es[1]!.item).toEqual({ id: "q2", image: join(root, "imgs/b.png"), question: "Is there a circle?" });
    expect(es[2]).toMatchObject({
      field: "record",
      reason: expect.stringContaining("found 3 fields; expected 5 (question,id,image,answer,notes)"),
    });
    expect(es[3]).toMatchObject({ line: 5, id: "q4", field: "question", reason: expect.stringMatching(/^empty; /) });
    expect(es[4]).toMatchObject({ line: 6, item: { id: "q5", question: "Multi\nline question", answer: "no" } });
    expect(es[5]).toMatchObject({ line: 8, id: "q6", field: "image", reason: expect.stringContaining("escapes the image root") });
  });

  it("reports a bad header once and stops", async () => {
    const stream = Readable.from(["id,img,question\nq1,imgs/a.png,what\n"]);
    const es = await collect(readManifestStream(stream, "csv", new ImageResolver(root)));
    expect(es).toHaveLength(1);
    expect(es[0]).toMatchObject({ ok: false, line: 1, field: "header", reason: expect.stringContaining("missing column image") });
    const empty = await collect(readManifestStream(Readable.from([""]), "csv", new ImageResolver(root)));
    expect(empty).toMatchObject([{ ok: false, field: "header", reason: expect.stringContaining("empty") }]);
  });
});

describe("image folders", () => {
  it("yields sorted images with ids from file names and rejects symlinks out", async () => {
    const es = await collect(readManifest(join(root, "imgs"), { question: "How many objects?" }));
    expect(es.map((e) => (e.ok ? e.item.id : `!${e.id}`))).toEqual(["a", "alias", "b", "c", "!escape"]);
    expect(es[0]).toEqual({
      ok: true,
      line: 1,
      item: { id: "a", image: join(root, "imgs/a.png"), question: "How many objects?" },
    });
    expect(failures(es)[0]).toMatchObject({ line: 5, field: "image", reason: expect.stringContaining("symlink") });
  });

  it("reports duplicate stems and needs a question", async () => {
    const dir = join(root, "dups");
    await mkdir(dir);
    await writeFile(join(dir, "x.png"), "1");
    await writeFile(join(dir, "x.jpg"), "2");
    await writeFile(join(dir, "notes.txt"), "skip me");
    const es = await collect(readManifest(dir, { question: "q" }));
    expect(es.map((e) => e.ok)).toEqual([true, false]);
    expect(es[1]).toMatchObject({ field: "id", id: "x", reason: expect.stringContaining("x.png gives the same id as x.jpg") });
    await expect(collect(readManifest(dir))).rejects.toThrow(/give the question/);
    await expect(collect(readManifest(join(root, "nope.jsonl")))).rejects.toThrow(/manifest not found/);
  });
});
