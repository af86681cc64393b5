/** What the fleet subcommands share: exit codes, argument parsers, and opening Redis/S3. */
import { CommanderError, InvalidArgumentError } from "commander";
import { Redis } from "ioredis";
import { ConfigError, type Config } from "../../../shared/io/config.ts";
import type { StagebeamMetrics } from "../../../shared/io/metrics.ts";
import { S3Store } from "../../../shared/io/storage/s3-store.ts";
import { UsageError } from "../../../shared/core/usage-error.ts";
import { RunLedger } from "../../../workers/fleet/ledger.ts";
import { openQueues, type FleetQueues } from "../../../workers/fleet/protocol.ts";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** Interrupted with Ctrl-C (128 + SIGINT), the shell's convention. */
export const EXIT_INTERRUPTED = 130;

/** Thrown by a command that has already reported what went wrong and only wants an exit code. */
export class CliExit extends Error {
  constructor(
    readonly code: number,
    message = "",
  ) {
    super(message);
    this.name = "CliExit";
  }
}

/** 2 for bad usage or configuration, the command's own code for CliExit, else 1. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CliExit) return err.code;
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  if (err instanceof UsageError || err instanceof ConfigError) return EXIT_USAGE;
  return EXIT_FAILURE;
}

export const intOption =
  (name: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  (value: string): number => {
    const n = Number(value);
    if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        `${name} must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : " up"}, got '${value}'`,
      );
    }
    return n;
  };

export const secondsOption =
  (name: string) =>
  (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a number of seconds ≥ 0, got '${value}'`);
    return n;
  };

export interface Fleet {
  queues: FleetQueues;
  redis: Redis;
  ledger: RunLedger;
  store: S3Store;
  close(): Promise<void>;
}

/** Queues, the run ledger and the S3 store of a validated config. */
export function openFleet(config: Pick<Config, "redis" | "s3">, metrics?: StagebeamMetrics): Fleet {
  const queues = openQueues(config.redis.url, config.redis.queuePrefix);
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 3, lazyConnect: false });
  redis.on("error", () => {}); // surfaced by the commands that use it
  const ledger = new RunLedger(redis, config.redis.queuePrefix);
  const store = S3Store.fromConfig(config.s3, metrics ? { metrics } : {});
  return {
    queues,
    redis,
    ledger,
    store,
    close: async () => {
      await queues.close().catch(() => {});
      redis.disconnect();
      store.destroy();
    },
  };
}

/** Write to stdout, waiting when the pipe is full; resolves false once the reader has gone (EPIPE). */
export function writeOut(text: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (process.stdout.destroyed) return resolve(false);
    const ok = process.stdout.write(text, (err) => {
      if (err) resolve(false);
    });
    if (ok) resolve(true);
    else process.stdout.once("drain", () => resolve(true));
  });
}
