/**
 * The producer's image staging: a local image or a data: URL is checked under the one image
 * policy (shared/io/image-policy.ts: size, pixels, a full decode, as the worker checks it) and put in S3 under its content hash, so the same image is uploaded once however many items or
 * submits use it; an s3:// image is used where it is.
 */
import { readFile, stat } from "node:fs/promises";
import { extname } from "node:path";
import pLimit from "p-limit";
import { sizeProblem } from "../../../shared/io/image-limits.ts";
import { decodeDataUrl } from "../../../shared/io/image-refs.ts";
import type { S3Store } from "../../../shared/io/storage/s3-store.ts";
import type { ProducerMetrics } from "./producer-metrics.ts";

export type StagedImage = { uri: string } | { error: string };

/** Paths remembered per submit before the memory is dropped (the hash still avoids a second upload). */
const MAX_REMEMBERED = 10_000;

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
      if (!inline) {
        // A file over the limit is refused before it is read, as a worker refuses the object before downloading it.
        const tooBig = sizeProblem((await stat(image)).size);
        if (tooBig !== null) return { error: `${name} ${tooBig}` };
      }
      ({ bytes, ext } = inline ? decodeDataUrl(image) : { bytes: await readFile(image), ext: extname(image) || ".png" });
    } catch (err) {
      return { error: `cannot read ${name}: ${(err as Error).message}` };
    }
    // Loaded on first use: a manifest of s3:// images never needs it (libvips holds ~30 MB).
    const { imageProblem } = await import("../../../shared/io/image-policy.ts");
    const problem = await imageProblem(bytes);
    if (problem !== null) return { error: `${name} ${problem}` };
    const s = await this.store.putBytes(bytes, ext);
    if (s.uploaded) this.uploaded++;
    else this.reused++;
    this.metrics?.imagesStaged.inc({ uploaded: String(s.uploaded) });
    if (this.staged.size >= MAX_REMEMBERED) this.staged.clear();
    if (!inline) this.staged.set(image, s.uri);
    return { uri: s.uri };
  }
}
