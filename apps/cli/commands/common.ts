/**
 * What every subcommand shares: exit codes, argument parsers, writing to stdout. Nothing of
 * the fleet (that is fleet-connection.ts), so that `ask` and `eval` load no Redis client.
 */
import { CommanderError, InvalidArgumentError } from "commander";
import { ConfigError } from "../../../shared/io/config.ts";
import { UsageError } from "../../../shared/core/usage-error.ts";

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

/** Text that must say something: an empty or blank value is a usage error, not an item that fails later. */
export const textOption =
  (name: string) =>
  (value: string): string => {
    if (value.trim() === "") throw new InvalidArgumentError(`${name} must not be empty`);
    return value;
  };

export const secondsOption =
  (name: string) =>
  (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a number of seconds ≥ 0, got '${value}'`);
    return n;
  };

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
