/** Staged images: fetched from S3 by their s3:// URI, in the run's bucket or another one. */
import { DEFAULT_IMAGE_LIMITS, sizeProblem } from "../../../shared/io/image-limits.ts";
import { ObjectTooLargeError, S3Store, parseS3Uri } from "../../../shared/io/storage/s3-store.ts";
import { badInput } from "../protocol/index.ts";

export function s3ImageFetcher(
  store: S3Store,
  metrics?: ConstructorParameters<typeof S3Store>[0]["metrics"],
): (uri: string) => Promise<Buffer> {
  const stores = new Map<string, S3Store>([[store.bucket, store]]);
  return async (uri) => {
    const loc = parseS3Uri(uri);
    if (!loc) throw badInput("image-missing", `image ${JSON.stringify(uri)} is not an s3://bucket/key URI`);
    let s = stores.get(loc.bucket);
    if (!s) {
      s = new S3Store({ client: store.client, bucket: loc.bucket, ...(metrics ? { metrics } : {}) });
      stores.set(loc.bucket, s);
    }
    let bytes: Uint8Array | undefined;
    try {
      bytes = await s.getBytes(loc.key, { maxBytes: DEFAULT_IMAGE_LIMITS.maxBytes });
    } catch (err) {
      // The image policy's byte limit, applied before the download rather than after it.
      if (err instanceof ObjectTooLargeError) throw badInput("image-too-large", `image ${uri} ${sizeProblem(err.bytes)}`);
      throw err;
    }
    if (bytes === undefined) throw badInput("image-missing", `image ${uri} does not exist`);
    if (bytes.byteLength === 0) throw badInput("image-unreadable", `image ${uri} is empty`);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}
