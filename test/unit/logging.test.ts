import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, logLevelFromEnv } from "../../shared/io/logging.ts";

function sink() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, stream };
}

describe("createLogger", () => {
  it("honours LOG_LEVEL and redacts credentials", () => {
    const { lines, stream } = sink();
    const log = createLogger({ name: "worker", env: { LOG_LEVEL: "warn" }, destination: stream });
    log.info("hidden");
    log.warn({ s3: { bucket: "b", secretAccessKey: "shh" } }, "shown");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, name: "worker", msg: "shown", s3: { bucket: "b", secretAccessKey: "***" } });
    expect(typeof lines[0]!.time).toBe("string");
  });

  it("defaults to info and rejects unknown levels", () => {
    expect(logLevelFromEnv({})).toBe("info");
    expect(logLevelFromEnv({ LOG_LEVEL: "DEBUG" })).toBe("debug");
    expect(() => logLevelFromEnv({ LOG_LEVEL: "chatty" })).toThrow(/LOG_LEVEL: got "chatty"; expected one of fatal/);
  });
});
