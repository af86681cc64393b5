/**
 * The producer's image staging: a local image or a data: URL is checked (it must decode) and
 * put in S3 under its content hash, so the same image is uploaded once however many items or
 * submits use it; an s3:// image is used where it is.
 */
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import pLimit from "p-limit";
import { decodeDataUrl } from "../../shared/io/image-refs.ts";
import type { S3Store } from "../../shared/io/storage/s3-store.ts";
import type { ProducerMetrics } from "./fleet-metrics.ts";

export type StagedImage = { uri: string } | { error: string };

/** Paths remembered per submit before the memory is dropped (the hash still avoids a second upload). */
const MAX_REMEMBERED = 10_000;

/** Content check of a local image: null when it decodes, else why not. */
async function checkImage(bytes: Buffer): Promise<string | null> {
  // Loaded on first use: a manifest of s3:// images never needs it (libvips holds ~30 MB).
  const { default: sharp } = await import("sharp");
  try {
    const meta = await sharp(bytes, { failOn: "error" }).metadata();
    if (!meta.width || !meta.height) return "it has no width or height";
    await sharp(bytes, { failOn: "error" }).stats();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
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
    if (images.every((i) => i.startsWith("s3://"))) return Promise.resolve(images.map((uri) => ({ uri })));
    const limit = pLimit(concurrency);
    return Promise.all(images.map((image) => limit(() => this.stage(image))));
  }

  async stage(image: string): Promise<StagedImage> {
    if (image.startsWith("s3://")) return { uri: image };
    const known = this.staged.get(image);
    if (known) return { uri: known };
    const inline = image.startsWith("data:");
    const name = inline ? "the data: URL" : image;
    let bytes: Buffer;
    let ext: string;
    try {
      ({ bytes, ext } = inline ? decodeDataUrl(image) : { bytes: await readFile(image), ext: extname(image) || ".png" });
    } catch (err) {
      return { error: `cannot read ${name}: ${(err as Error).message}` };
    }
    const problem = await checkImage(bytes);
    if (problem !== null)
      return { error: `${name} is not a readable image (${problem}); expected a PNG, JPEG, WebP, GIF, TIFF or AVIF image` };
    const s = await this.store.putBytes(bytes, ext);
    if (s.uploaded) this.uploaded++;
    else this.reused++;
    this.metrics?.imagesStaged.inc({ uploaded: String(s.uploaded) });
    if (this.staged.size >= MAX_REMEMBERED) this.staged.clear();
    if (!inline) this.staged.set(image, s.uri);
    return { uri: s.uri };
  }
}
