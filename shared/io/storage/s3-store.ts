/**
 * The result store: JSON documents and content-addressed images in one S3 bucket, over
 * @aws-sdk/client-s3. Every request is timed into stagebeam_s3_request_seconds{op} and
 * failures (after the SDK's retries) count in stagebeam_s3_errors_total{op}; a 404 on a
 * get or head is an answer ("not there"), not an error.
 *
 * Writes are single PutObject calls (no multipart): results are small, and s3rver, the
 * embedded endpoint, lacks abort-multipart.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { extname } from "node:path";
import { Readable } from "node:stream";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import type { S3Config } from "../config.ts";
import type { StagebeamMetrics } from "../metrics.ts";
import { contentTypeOf, imageKey, normalizeExt, s3Uri } from "./keys.ts";

export * from "./keys.ts";

export const S3_OPS = [
  "PutObject",
  "GetObject",
  "HeadObject",
  "ListObjectsV2",
  "HeadBucket",
  "DeleteObject",
  "CreateMultipartUpload",
  "UploadPart",
  "CompleteMultipartUpload",
] as const;
export type S3Op = (typeof S3_OPS)[number];

/** Parts of a multipart upload: S3 wants at least 5 MiB in every part but the last. */
export const MULTIPART_PART_BYTES = 8 * 2 ** 20;

/** A multipart upload written part by part, which can be resumed from its id and parts. */
export interface MultipartState {
  key: string;
  uploadId: string;
  parts: { PartNumber: number; ETag: string }[];
}

export type S3Metrics = Pick<StagebeamMetrics, "s3RequestSeconds" | "s3Errors">;

export interface ListedObject {
  key: string;
  size: number;
  lastModified?: Date;
  /** The object's entity tag as listed (quotes kept): changes whenever its content does. */
  etag?: string;
}

export interface StagedImage {
  key: string;
  uri: string;
  sha256: string;
  size: number;
  /** False when an object with this content hash was already there. */
  uploaded: boolean;
}

/** A minimal schema interface (zod schemas fit) for typed getJson. */
export interface Parser<T> {
  parse(value: unknown): T;
}

/** Build an S3 client from a validated config section. */
export function createS3Client(cfg: S3Config, extra: Partial<S3ClientConfig> = {}): S3Client {
  // The SDK versions we pin (published before 2027) support Node 20; newer ones will not,
  // and the SDK says so on stderr of every process. We know: keep stderr for real problems.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  return new S3Client({
    region: cfg.region,
    forcePathStyle: cfg.forcePathStyle,
    ...(cfg.endpoint !== undefined ? { endpoint: cfg.endpoint } : {}),
    ...(cfg.credentials !== undefined ? { credentials: cfg.credentials } : {}),
    ...extra,
  });
}

function isNotFound(err: unknown): boolean {
  if (err instanceof S3ServiceException) {
    return err.$metadata.httpStatusCode === 404 || err.name === "NoSuchKey" || err.name === "NotFound";
  }
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return e?.$metadata?.httpStatusCode === 404 || e?.name === "NoSuchKey" || e?.name === "NotFound";
}

/** An object larger than the caller accepts; `bytes` is its length, or what was read before giving up. */
export class ObjectTooLargeError extends Error {
  override readonly name = "ObjectTooLargeError";
  constructor(
    readonly key: string,
    readonly bytes: number,
    readonly maxBytes: number,
  ) {
    super(`s3 object ${key} holds more than ${maxBytes} bytes (${bytes} seen)`);
  }
}

/** The conditional write lost: an object was already at the key. */
function isPreconditionFailed(err: unknown): boolean {
  return err instanceof S3StoreError && (err.httpStatus === 412 || err.code === "PreconditionFailed");
}

/**
 * A failed S3 request, after the SDK's retries. Carries the S3 error code and HTTP status
 * but not the SDK's error object, whose raw HTTP response would flood logs.
 */
export class S3StoreError extends Error {
  readonly code: string;
  readonly httpStatus: number | undefined;
  readonly attempts: number | undefined;
  constructor(
    readonly op: S3Op,
    readonly key: string,
    err: unknown,
  ) {
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number; attempts?: number } };
    const code = e?.name ?? "Error";
    const status = e?.$metadata?.httpStatusCode;
    const attempts = e?.$metadata?.attempts;
    const detail = [
      status !== undefined ? `HTTP ${status}` : undefined,
      attempts !== undefined ? `${attempts} attempt${attempts === 1 ? "" : "s"}` : undefined,
    ]
      .filter(Boolean)
      .join(", ");
    super(`S3 ${op} ${key} failed: ${code}: ${e?.message ?? String(err)}${detail ? ` (${detail})` : ""}`);
    this.name = "S3StoreError";
    this.code = code;
    this.httpStatus = status;
    this.attempts = attempts;
  }
}

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  metrics?: S3Metrics;
}

export class S3Store {
  readonly client: S3Client;
  readonly bucket: string;
  private readonly metrics: S3Metrics | undefined;

  constructor(opts: S3StoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.metrics = opts.metrics;
    // Every op's error count exists from the start (at 0), so alerts and panels see the first error as an increase.
    for (const op of S3_OPS) this.metrics?.s3Errors.inc({ op }, 0);
  }

  static fromConfig(cfg: S3Config, opts: { metrics?: S3Metrics; client?: Partial<S3ClientConfig> } = {}): S3Store {
    return new S3Store({
      client: createS3Client(cfg, opts.client),
      bucket: cfg.bucket,
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
    });
  }

  /** Time one request; NotFound passes through uncounted as an error. Other errors are wrapped. */
  private async timed<T>(op: S3Op, key: string, fn: () => Promise<T>): Promise<T> {
    const end = this.metrics?.s3RequestSeconds.startTimer({ op });
    try {
      return await fn();
    } catch (err) {
      if (isNotFound(err) || err instanceof ObjectTooLargeError) throw err;
      this.metrics?.s3Errors.inc({ op });
      throw new S3StoreError(op, key, err);
    } finally {
      end?.();
    }
  }

  uri(key: string): string {
    return s3Uri(this.bucket, key);
  }

  async putJson(key: string, value: unknown): Promise<void> {
    const body = JSON.stringify(value);
    if (body === undefined) throw new Error(`putJson ${key}: value is not JSON-serialisable`);
    await this.putBytesAt(key, Buffer.from(body, "utf8"), "application/json");
  }

  /**
   * Writes value at key unless an object is already there; false when one was. The check is
   * made twice: a HEAD first (an S3 server that ignores If-None-Match still never overwrites a
   * result written long before), then the write itself is conditional, so of two writers
   * racing on AWS S3 or MinIO only the first lands.
   */
  async putJsonIfAbsent(key: string, value: unknown): Promise<boolean> {
    if (await this.exists(key)) return false;
    const body = Buffer.from(JSON.stringify(value), "utf8");
    try {
      await this.timed("PutObject", key, () =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Body: body,
            ContentType: "application/json",
            ContentLength: body.byteLength,
            IfNoneMatch: "*",
          }),
        ),
      );
      return true;
    } catch (err) {
      if (isPreconditionFailed(err)) return false;
      throw err;
    }
  }

  /** The parsed JSON at key, or undefined when there is no such object. */
  async getJson<T = unknown>(key: string, schema?: Parser<T>): Promise<T | undefined> {
    const bytes = await this.getBytes(key);
    if (bytes === undefined) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(bytes).toString("utf8"));
    } catch (err) {
      throw new Error(`s3://${this.bucket}/${key} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    return schema ? schema.parse(value) : (value as T);
  }

  /** Resolves when the bucket answers (HeadBucket): the worker's readiness check. */
  async ping(): Promise<void> {
    await this.timed("HeadBucket", this.bucket, () => this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.timed("HeadObject", key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** Every object under prefix, in key order, one ListObjectsV2 page at a time. */
  async *list(prefix: string, pageSize = 1000): AsyncGenerator<ListedObject> {
    let token: string | undefined;
    do {
      const page = await this.timed("ListObjectsV2", prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            MaxKeys: pageSize,
            ...(token !== undefined ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield {
          key: o.Key,
          size: o.Size ?? 0,
          ...(o.LastModified ? { lastModified: o.LastModified } : {}),
          ...(o.ETag !== undefined ? { etag: o.ETag } : {}),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /**
   * One page of the keys under prefix after `startAfter` (a key, exclusive), in key order, and
   * the key to start the next page after (null on the last page). One ListObjectsV2 call: a
   * page costs the same at the millionth key as at the first.
   */
  async listPage(
    prefix: string,
    opts: { startAfter?: string; maxKeys: number },
  ): Promise<{ keys: string[]; next: string | null }> {
    const page = await this.timed("ListObjectsV2", prefix, () =>
      this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          MaxKeys: opts.maxKeys,
          ...(opts.startAfter !== undefined ? { StartAfter: opts.startAfter } : {}),
        }),
      ),
    );
    const keys = (page.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [o.Key]));
    return { keys, next: page.IsTruncated && keys.length > 0 ? keys.at(-1)! : null };
  }

  /**
   * The object's bytes, or undefined when there is no such object. With `maxBytes`, an object
   * larger than that is refused from its Content-Length, before its body is read, and a body
   * that runs past it (no or a wrong length) is cut off: an ObjectTooLargeError either way.
   */
  async getBytes(key: string, opts: { maxBytes?: number } = {}): Promise<Uint8Array | undefined> {
    const max = opts.maxBytes;
    try {
      return await this.timed("GetObject", key, async () => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
        if (!res.Body) return new Uint8Array(0);
        if (max === undefined) return await res.Body.transformToByteArray();
        const body = res.Body as Readable;
        if (res.ContentLength !== undefined && res.ContentLength > max) {
          body.destroy();
          throw new ObjectTooLargeError(key, res.ContentLength, max);
        }
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of body) {
          size += (chunk as Buffer).length;
          if (size > max) {
            body.destroy();
            throw new ObjectTooLargeError(key, size, max);
          }
          chunks.push(chunk as Buffer);
        }
        return Buffer.concat(chunks);
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Streams the object into `file` (created or truncated) without holding it in memory, for
   * files of any size (model weights). Returns the bytes written; throws when there is no such object.
   */
  async downloadTo(key: string, file: string): Promise<number> {
    return await this.timed("GetObject", key, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const out = createWriteStream(file);
      if (!res.Body) {
        await new Promise<void>((done, fail) => out.end((err?: Error | null) => (err ? fail(err) : done())));
        return 0;
      }
      await pipeline(res.Body as Readable, out);
      return out.bytesWritten;
    });
  }

  /** The object's body as a stream (any bucket: a manifest may live elsewhere); undefined when absent. */
  async getStream(key: string, bucket = this.bucket): Promise<Readable | undefined> {
    try {
      return await this.timed("GetObject", key, async () => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return res.Body instanceof Readable ? res.Body : Readable.from([]);
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.timed("DeleteObject", key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  async startMultipart(key: string, contentType: string): Promise<MultipartState> {
    const res = await this.timed("CreateMultipartUpload", key, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: contentType })),
    );
    if (!res.UploadId) throw new S3StoreError("CreateMultipartUpload", key, new Error("no UploadId in the answer"));
    return { key, uploadId: res.UploadId, parts: [] };
  }

  /** Uploads the next part of `m` (updated in place). */
  async uploadPart(m: MultipartState, bytes: Uint8Array): Promise<void> {
    const PartNumber = m.parts.length + 1;
    const res = await this.timed("UploadPart", m.key, () =>
      this.client.send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: m.key,
          UploadId: m.uploadId,
          PartNumber,
          Body: bytes,
          ContentLength: bytes.byteLength,
        }),
      ),
    );
    m.parts.push({ PartNumber, ETag: res.ETag ?? "" });
  }

  /** Completes `m`; an upload without parts becomes an empty object. */
  async completeMultipart(m: MultipartState): Promise<void> {
    if (m.parts.length === 0) await this.uploadPart(m, new Uint8Array(0));
    await this.timed("CompleteMultipartUpload", m.key, () =>
      this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: m.key,
          UploadId: m.uploadId,
          MultipartUpload: { Parts: m.parts },
        }),
      ),
    );
  }

  /** Streams `input` to `key` in parts, in constant memory (a manifest from stdin, say). */
  async putStream(key: string, input: AsyncIterable<Uint8Array>, contentType = "application/octet-stream"): Promise<number> {
    const m = await this.startMultipart(key, contentType);
    let pending: Buffer[] = [];
    let size = 0;
    let total = 0;
    for await (const chunk of input) {
      pending.push(Buffer.from(chunk));
      size += chunk.byteLength;
      total += chunk.byteLength;
      if (size >= MULTIPART_PART_BYTES) {
        await this.uploadPart(m, Buffer.concat(pending));
        pending = [];
        size = 0;
      }
    }
    if (size > 0) await this.uploadPart(m, Buffer.concat(pending));
    await this.completeMultipart(m);
    return total;
  }

  /** Single PutObject of bytes at an exact key. */
  async putBytesAt(key: string, bytes: Uint8Array, contentType = "application/octet-stream"): Promise<void> {
    await this.timed("PutObject", key, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: bytes,
          ContentType: contentType,
          ContentLength: bytes.byteLength,
        }),
      ),
    );
  }

  /**
   * Stage image bytes under images/sha256/<hex>.<ext>; skips the upload when that object
   * already exists (same content, same key).
   */
  async putBytes(bytes: Uint8Array, ext: string): Promise<StagedImage> {
    const e = normalizeExt(ext);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const key = imageKey(sha256, e);
    const staged = { key, uri: this.uri(key), sha256, size: bytes.byteLength };
    if (await this.exists(key)) return { ...staged, uploaded: false };
    await this.putBytesAt(key, bytes, contentTypeOf(key));
    return { ...staged, uploaded: true };
  }

  /** Stage a local image file (extension from its name). */
  async putFile(path: string): Promise<StagedImage> {
    const ext = extname(path);
    if (ext === "") throw new Error(`cannot stage ${path}: the file name has no extension`);
    return this.putBytes(await readFile(path), ext);
  }

  destroy(): void {
    this.client.destroy();
  }
}
