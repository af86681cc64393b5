/**
 * A private redis-server child process for tests and the demo: loopback only, a free port,
 * its own data directory, AOF on, `noeviction`, no RDB snapshots. Resolves once PING
 * answers PONG. Passing the same `port` and `dir` again restarts it on the same data
 * (the AOF is replayed), which is how tests simulate a Redis restart.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { endChild, hasExited, trackChild } from "./child-process.ts";
import { freePort } from "./free-port.ts";

export interface RedisServerOptions {
  /** Port to bind; default a free one (retried on a bind race). */
  port?: number;
  /** Host to bind (default 127.0.0.1). */
  host?: string;
  /** Data directory; default a new temp dir that stop() removes. A given dir is never removed. */
  dir?: string;
  /** redis-server executable (default "redis-server" on PATH). */
  bin?: string;
  /** A password (`--requirepass`): the url carries it percent-encoded, and the start-up PING authenticates with it. */
  password?: string;
  /** Extra `--option value` arguments appended to the command line. */
  extraArgs?: readonly string[];
  /** How long to wait for PONG (default 20 s; AOF replay of a big file takes a while). */
  startTimeoutMs?: number;
}

export interface RedisServer {
  url: string;
  host: string;
  port: number;
  dir: string;
  pid: number;
  /** Graceful stop (SIGTERM: Redis fsyncs the AOF and exits). Removes the dir if we created it. */
  stop(): Promise<void>;
  /** Crash stop (SIGKILL), for failure tests. Removes the dir if we created it. */
  kill(): Promise<void>;
}

const LOG_FILE = "redis.log";

/** A command in RESP, which carries any bytes (a password with spaces, quotes or non-ASCII). */
function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
}

/** AUTH first when there is a password; its +OK is taken off the reply before `reply` sees it. */
function authThen(password: string | undefined, command: string): { request: string; strip(buf: string): string | undefined } {
  if (password === undefined) return { request: command, strip: (buf) => buf };
  return {
    request: resp("AUTH", password) + command,
    strip: (buf) => {
      const nl = buf.indexOf("\r\n");
      if (nl < 0) return undefined;
      return buf.startsWith("+OK") ? buf.slice(nl + 2) : "-AUTH failed\r\n";
    },
  };
}

/** PING over a raw socket; true only on +PONG (a replaying server answers -LOADING). */
export function pingRedis(host: string, port: number, timeoutMs = 1000, password?: string): Promise<boolean> {
  const { request, strip } = authThen(password, "PING\r\n");
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let buf = "";
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("error", () => done(false));
    sock.once("connect", () => sock.write(request));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      const reply = strip(buf);
      if (reply?.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
  });
}

/** The process_id from INFO server, or undefined. */
export function redisProcessId(host: string, port: number, timeoutMs = 1000, password?: string): Promise<number | undefined> {
  const { request, strip } = authThen(password, "INFO server\r\n");
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let buf = "";
    const done = (pid: number | undefined) => {
      sock.destroy();
      resolve(pid);
    };
    sock.setTimeout(timeoutMs, () => done(undefined));
    sock.once("error", () => done(undefined));
    sock.once("connect", () => sock.write(request));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      const reply = strip(buf);
      if (reply === undefined || reply === "") return;
      if (!reply.startsWith("$")) return done(undefined);
      const m = /process_id:(\d+)/.exec(reply);
      if (m) done(Number(m[1]));
    });
  });
}

async function logTail(dir: string, lines = 15): Promise<string> {
  try {
    const text = await readFile(join(dir, LOG_FILE), "utf8");
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

class StartError extends Error {
  constructor(
    message: string,
    readonly portInUse: boolean,
  ) {
    super(message);
  }
}

async function startOnce(
  bin: string,
  host: string,
  port: number,
  dir: string,
  extraArgs: readonly string[],
  timeoutMs: number,
  password: string | undefined,
): Promise<ChildProcess> {
  const args = [
    "--port",
    String(port),
    "--bind",
    host,
    "--dir",
    dir,
    "--logfile",
    LOG_FILE,
    "--daemonize",
    "no",
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--maxmemory-policy",
    "noeviction",
    "--save",
    "",
    ...(password !== undefined ? ["--requirepass", password] : []),
    ...extraArgs,
  ];
  const child = spawn(bin, args, { stdio: "ignore", cwd: dir });
  let spawnError: Error | undefined;
  child.once("error", (e) => (spawnError = e));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError) {
      const code = (spawnError as NodeJS.ErrnoException).code;
      throw new StartError(
        code === "ENOENT"
          ? `${bin} not found on PATH; install it with scripts/ensure-system-deps.sh demo`
          : `could not start ${bin}: ${spawnError.message}`,
        false,
      );
    }
    if (hasExited(child)) {
      const tail = await logTail(dir);
      throw new StartError(
        `redis-server exited during start (code ${child.exitCode ?? child.signalCode}) on ${host}:${port}:\n${tail}`,
        /already in use|Could not create server TCP listening socket/i.test(tail),
      );
    }
    // A PONG from another server already on this port does not count: check the pid.
    if ((await pingRedis(host, port, 500, password)) && (await redisProcessId(host, port, 1000, password)) === child.pid) {
      trackChild(child);
      return child;
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new StartError(`redis-server did not answer PING within ${timeoutMs} ms:\n${await logTail(dir)}`, false);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const host = opts.host ?? "127.0.0.1";
  const bin = opts.bin ?? "redis-server";
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "stagebeam-redis-")));
  const timeoutMs = opts.startTimeoutMs ?? 20_000;

  let child: ChildProcess | undefined;
  let port = opts.port ?? 0;
  try {
    for (let attempt = 0; ; attempt++) {
      port = opts.port ?? (await freePort(host));
      try {
        child = await startOnce(bin, host, port, dir, opts.extraArgs ?? [], timeoutMs, opts.password);
        break;
      } catch (e) {
        if (e instanceof StartError && e.portInUse && opts.port === undefined && attempt < 5) continue;
        throw e;
      }
    }
  } catch (e) {
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw e;
  }

  const proc = child;

  let stopped: Promise<void> | undefined;
  const shutdown = (signal: NodeJS.Signals) =>
    (stopped ??= (async () => {
      await endChild(proc, signal);
      if (ownDir) await rm(dir, { recursive: true, force: true });
    })());

  return {
    url: `redis://${opts.password !== undefined ? `:${encodeURIComponent(opts.password)}@` : ""}${host.includes(":") ? `[${host}]` : host}:${port}`,
    host,
    port,
    dir,
    pid: proc.pid ?? -1,
    stop: () => shutdown("SIGTERM"),
    kill: () => shutdown("SIGKILL"),
  };
}
