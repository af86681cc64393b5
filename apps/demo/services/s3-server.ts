/**
 * An embedded S3 endpoint for tests and the demo: s3rver (the S3 protocol over HTTP,
 * objects on disk) in a child Node process on a loopback port, with one bucket created.
 *
 * Why a child process: s3rver encrypts ListObjectsV2 continuation tokens with DES, which
 * Node's OpenSSL 3 offers only with `--openssl-legacy-provider`; in-process, every
 * truncated (paginated) listing fails with a 500. A child also can be killed to simulate
 * an outage, and it exits by itself when its parent dies (it watches its stdin).
 *
 * s3rver only knows the access key id `S3RVER` (it does not check V4 signatures, so any
 * secret works) and lacks abort-multipart: store results with single PUTs. Passing the same
 * `port` and `dir` again restarts it on the same data.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { S3Config } from "../../../shared/io/config.ts";
import { OutputTail, endChild, hasExited, trackChild } from "./child-process.ts";

export const S3RVER_ACCESS_KEY_ID = "S3RVER";
export const S3RVER_SECRET_ACCESS_KEY = "S3RVER";

const RUNNER = fileURLToPath(new URL("./s3rver-child.mjs", import.meta.url));

export interface S3ServerOptions {
  /** Port to bind; default a free one picked by the OS. */
  port?: number;
  /** Host to bind (default 127.0.0.1). */
  host?: string;
  /** Data directory; default a new temp dir that stop() removes. A given dir is never removed. */
  dir?: string;
  /** Bucket to create (default "stagebeam"). Existing data in `dir` is kept. */
  bucket?: string;
  /** Region reported to clients (s3rver ignores it; default us-east-1). */
  region?: string;
  /** The secret clients sign with (default S3RVER; s3rver accepts any, so a test can use an awkward one). */
  secretAccessKey?: string;
  /** How long to wait for the server to listen (default 20 s). */
  startTimeoutMs?: number;
}

export interface S3Server {
  endpoint: string;
  host: string;
  port: number;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: true;
  dir: string;
  pid: number;
  /** The same settings as a validated S3 config section. */
  config: S3Config;
  /** The same settings as S3_* environment variables, for child processes. */
  env: Record<string, string>;
  /** Graceful stop. Removes the dir if we created it. */
  stop(): Promise<void>;
  /** Crash stop (SIGKILL), for outage tests. Removes the dir if we created it. */
  kill(): Promise<void>;
}

export async function startS3Server(opts: S3ServerOptions = {}): Promise<S3Server> {
  const host = opts.host ?? "127.0.0.1";
  const bucket = opts.bucket ?? "stagebeam";
  const region = opts.region ?? "us-east-1";
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "stagebeam-s3-")));
  const timeoutMs = opts.startTimeoutMs ?? 20_000;
  const secretAccessKey = opts.secretAccessKey ?? S3RVER_SECRET_ACCESS_KEY;

  const child = spawn(process.execPath, ["--openssl-legacy-provider", RUNNER, dir, host, String(opts.port ?? 0), bucket], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  trackChild(child);
  const tail = new OutputTail();
  child.stderr.on("data", (d: Buffer) => tail.push(d));

  let port: number;
  let onEarlyExit: ((code: number | null, signal: NodeJS.Signals | null) => void) | undefined;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(
        () => reject(new Error(`s3rver did not start within ${timeoutMs} ms:\n${tail.text()}`)),
        timeoutMs,
      );
      const onData = (d: Buffer) => {
        out += d.toString();
        const nl = out.indexOf("\n");
        if (nl < 0) return;
        clearTimeout(timer);
        child.stdout.off("data", onData);
        child.stdout.on("data", (more: Buffer) => tail.push(more));
        try {
          resolve((JSON.parse(out.slice(0, nl)) as { port: number }).port);
        } catch {
          reject(new Error(`s3rver printed ${JSON.stringify(out.slice(0, nl))} instead of its port`));
        }
      };
      child.stdout.on("data", onData);
      child.once("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`could not start s3rver: ${e.message}`));
      });
      onEarlyExit = (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(timer);
        // Let stderr drain before reporting it.
        setImmediate(() =>
          reject(new Error(`s3rver exited during start (${code ?? signal}) on ${host}:${opts.port ?? 0}:\n${tail.text()}`)),
        );
      };
      child.once("exit", onEarlyExit);
    });
  } catch (e) {
    if (!hasExited(child)) await endChild(child, "SIGKILL");
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw e;
  }
  if (onEarlyExit) child.off("exit", onEarlyExit);

  const endpoint = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const config: S3Config = {
    endpoint,
    bucket,
    region,
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey },
  };
  let stopped: Promise<void> | undefined;
  const shutdown = (how: "stdin" | "SIGKILL") =>
    (stopped ??= (async () => {
      await endChild(child, how);
      if (ownDir) await rm(dir, { recursive: true, force: true });
    })());

  return {
    endpoint,
    host,
    port,
    bucket,
    region,
    accessKeyId: S3RVER_ACCESS_KEY_ID,
    secretAccessKey,
    forcePathStyle: true,
    dir,
    pid: child.pid ?? -1,
    config,
    env: {
      S3_ENDPOINT: endpoint,
      S3_BUCKET: bucket,
      S3_REGION: region,
      S3_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID,
      S3_SECRET_ACCESS_KEY: secretAccessKey,
      S3_FORCE_PATH_STYLE: "true",
    },
    stop: () => shutdown("stdin"),
    kill: () => shutdown("SIGKILL"),
  };
}
