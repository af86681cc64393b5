/**
 * The producer's image staging: a local image is checked (it must decode) and put in S3 under
 * its content hash, so the same file is uploaded once however many items or submits use it;
 * an s3:// image is used where it is.
 */
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import sharp from "sharp";
import type { S3Store } from "../../shared/io/storage/s3-store.ts";
import type { ProducerMetrics } from "./fleet-metrics.ts";

export type StagedImage = { uri: string } | { error: string };

/** Paths remembered per submit before the memory is dropped (the hash still avoids a second upload). */
const MAX_REMEMBERED = 10_000;

/** Content check of a local image: null when it decodes, else why not. */
async function checkImage(bytes: Buffer): Promise<string | null> {
  try {
    const meta = await sharp(bytes, { failOn: "error" }).metadata();
    if (!meta.width || !meta.height) return "it has no width or height";
    await sharp(bytes, { failOn: "error" }).stats();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

export class ImageStager {
  uploaded = 0;
  reused = 0;
  /** Local path → s3 URI. */
  private readonly staged = new Map<string, string>();

  constructor(
    private readonly store: S3Store,
    private readonly metrics?: ProducerMetrics,
  ) {}

  /** Stages the images, `concurrency` at a time; results in the order of `images`. */
  stageAll(images: readonly string[], concurrency: number): Promise<StagedImage[]> {
    return mapLimit(images, concurrency, (image) => this.stage(image));
  }

  async stage(image: string): Promise<StagedImage> {
    if (image.startsWith("s3://")) return { uri: image };
    const known = this.staged.get(image);
    if (known) return { uri: known };
    let bytes: Buffer;
    try {
      bytes = await readFile(image);
    } catch (err) {
      return { error: `cannot read ${image}: ${(err as Error).message}` };
    }
    const problem = await checkImage(bytes);
    if (problem !== null)
      return { error: `${image} is not a readable image (${problem}); expected a PNG, JPEG, WebP, GIF, TIFF or AVIF file` };
    const s = await this.store.putBytes(bytes, extname(image) || ".png");
    if (s.uploaded) this.uploaded++;
    else this.reused++;
    this.metrics?.imagesStaged.inc({ uploaded: String(s.uploaded) });
    if (this.staged.size >= MAX_REMEMBERED) this.staged.clear();
    this.staged.set(image, s.uri);
    return { uri: s.uri };
  }
}
