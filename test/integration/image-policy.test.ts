/**
 * One image policy at submit and in the worker: on a corpus of damaged images (truncated at
 * many points, bytes flipped, empty, not an image, padded past the byte limit), submit's
 * staging refuses exactly the images that the worker's download or the engine's decode would
 * refuse, with the same verdicts on every run; an object over the byte limit is refused by the
 * worker from its length, as image-too-large. Real embedded S3, the bundled model's
 * preprocessing.
 */
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startS3Server, type S3Server } from "../../apps/demo/services/s3-server.ts";
import { BUNDLED_MODEL_DIR } from "../../shared/io/config.ts";
import { S3Store } from "../../shared/io/storage/s3-store.ts";
import { loadModelFolder } from "../../workers/engine/index.ts";
import { preprocessImage } from "../../workers/engine/image.ts";
import { ImageStager } from "../../workers/fleet/feed/index.ts";
import { s3ImageFetcher } from "../../workers/fleet/worker/index.ts";

let s3: S3Server;
let store: S3Store;
let dir: string;
const corpus = new Map<string, Buffer>();

beforeAll(async () => {
  s3 = await startS3Server();
  store = S3Store.fromConfig(s3.config);
  dir = await mkdtemp(join(tmpdir(), "sb-image-policy-"));
  const png = await readFile(new URL("../../apps/demo/sample/s42-000000.png", import.meta.url));
  corpus.set("whole", png);
  for (const f of [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97, 0.995])
    corpus.set(`cut-${f}`, png.subarray(0, Math.floor(png.length * f)));
  for (const at of [40, 90, 200, 400, 800, png.length - 30, png.length - 8]) {
    const flipped = Buffer.from(png);
    flipped[at] = flipped[at]! ^ 0xff;
    corpus.set(`flip-${at}`, flipped);
  }
  corpus.set("empty", Buffer.alloc(0));
  corpus.set("text", Buffer.from("not an image at all\n"));
  corpus.set("padded-21MiB", Buffer.concat([png, Buffer.alloc(21 * 1024 * 1024 - png.length)]));
  for (const [name, bytes] of corpus) {
    await writeFile(join(dir, `${name}.png`), bytes);
    await store.putBytesAt(`raw/${name}.png`, bytes);
  }
});

afterAll(async () => {
  store?.destroy();
  await s3?.stop();
});

async function verdicts(): Promise<Map<string, { submit: string | null; worker: string | null }>> {
  const folder = await loadModelFolder(BUNDLED_MODEL_DIR);
  const stager = new ImageStager(store);
  const fetch = s3ImageFetcher(store);
  const out = new Map<string, { submit: string | null; worker: string | null }>();
  for (const name of corpus.keys()) {
    const staged = await stager.stage(join(dir, `${name}.png`));
    let worker: string | null = null;
    try {
      await preprocessImage(name, await fetch(`s3://${store.bucket}/raw/${name}.png`), folder.preprocessor!);
    } catch (err) {
      worker = (err as Error).message;
    }
    out.set(name, { submit: "error" in staged ? staged.error : null, worker });
  }
  return out;
}

describe("the one image policy", () => {
  it("refuses at submit exactly what a worker refuses, the same way on every run", async () => {
    const first = await verdicts();
    for (const [name, v] of first)
      expect(v.submit === null, `${name}: submit ${v.submit} / worker ${v.worker}`).toBe(v.worker === null);
    expect(first.get("whole")).toEqual({ submit: null, worker: null });
    for (const bad of ["empty", "text", "padded-21MiB", "cut-0.05", "cut-0.5"])
      expect(first.get(bad)?.submit, bad).not.toBeNull();
    // Deterministic: the same bytes, the same verdicts and messages.
    expect(await verdicts()).toEqual(first);
  });

  it("refuses an object over the byte limit from its length, naming its size and the limit", async () => {
    const err = await s3ImageFetcher(store)(`s3://${store.bucket}/raw/padded-21MiB.png`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "image-too-large", unrecoverable: true });
    expect((err as Error).message).toMatch(/is 21\.0 MiB; expected at most 20\.0 MiB/);
    const staged = await new ImageStager(store).stage(join(dir, "padded-21MiB.png"));
    expect(staged).toEqual({ error: `${join(dir, "padded-21MiB.png")} is 21.0 MiB; expected at most 20.0 MiB` });
  });
});
