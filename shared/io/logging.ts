/**
 * pino logger factory. Logs are JSON lines on stderr, so a command's stdout stays free
 * for its data (results, status tables). The level comes from LOG_LEVEL unless given.
 */
import { pino, type DestinationStream, type Logger } from "pino";
import { redactSecrets } from "./secrets.ts";
import { loadConfig, type Env, type LogLevel } from "./config.ts";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** Component name, e.g. "worker" or "producer"; becomes the `name` field. */
  name?: string;
  /** Overrides LOG_LEVEL. */
  level?: LogLevel;
  /** Environment to read LOG_LEVEL from (default process.env). */
  env?: Env;
  /** Where to write (default: stderr, synchronously so nothing is lost at exit). */
  destination?: DestinationStream;
  /** Fields added to every line. */
  base?: Record<string, unknown>;
}

/** The log level LOG_LEVEL asks for; a bad value is a ConfigError. */
export function logLevelFromEnv(env: Env = process.env): LogLevel {
  return loadConfig(env, ["logging"]).logging.level;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? logLevelFromEnv(opts.env);
  const destination = opts.destination ?? pino.destination({ dest: 2, sync: true });
  return pino(
    {
      level,
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      base: { pid: process.pid, ...opts.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Never log credentials that end up in objects we log, nor a URL password or a configured
      // secret that ends up in a message or an error's stack.
      redact: {
        paths: ["*.secretAccessKey", "*.password", "credentials", "*.credentials"],
        censor: "***",
      },
      hooks: { streamWrite: redactSecrets },
    },
    destination,
  );
}
