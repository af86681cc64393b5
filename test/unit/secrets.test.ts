import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/io/config.ts";
import { createLogger } from "../../shared/io/logging.ts";
import { redactSecrets, rememberSecret } from "../../shared/io/secrets.ts";

/** Passwords that broke or could break a redaction rule: separators, escapes, percent signs, non-ASCII. */
const PASSWORDS = [
  "s3cr3tPart/rest",
  "a@b",
  "p:w:d",
  "50%off",
  "hash#tag",
  "pässwörd✓",
  "a/b@c:d#e%f",
  "ends/",
  'quo"te\\back',
  "sp ace",
  "dGVzdC9wYXNzd29yZCs/PQ==",
];

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}

function capturingLogger() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger({ level: "info", destination }), text: () => lines.join("") };
}

describe("redactSecrets", () => {
  it("hides a URL password whatever characters it holds, keeping the user and the host", () => {
    for (const password of PASSWORDS.filter((p) => !p.includes(" "))) {
      for (const user of ["", "admin"]) {
        const shown = redactSecrets(`connect to redis://${user}:${password}@10.0.0.1:6379/0 failed`);
        expect(shown, password).toBe(`connect to redis://${user}:***@10.0.0.1:6379/0 failed`);
      }
    }
  });

  it("leaves URLs without a password alone", () => {
    expect(redactSecrets("redis://127.0.0.1:6379 and http://minio:9000/bucket")).toBe(
      "redis://127.0.0.1:6379 and http://minio:9000/bucket",
    );
  });

  it("hides a remembered secret in every form it may be printed in", () => {
    // Values under four characters are not remembered (they would mask ordinary words).
    for (const password of PASSWORDS.filter((p) => p.length >= 4)) {
      rememberSecret(password);
      const forms = [password, encodeURIComponent(password), JSON.stringify(password).slice(1, -1)];
      for (const form of forms) expect(redactSecrets(`x ${form} y`), form).toBe("x *** y");
    }
  });
});

describe("secrets in configuration errors and logs", () => {
  it("keeps every awkward password out of the configuration error", () => {
    for (const password of PASSWORDS) {
      const err = errorOf(() => loadConfig({ REDIS_URL: `redis://:${password}@host:no-port` }, ["redis"]));
      expect(err.message, password).toContain("REDIS_URL: got ");
      expect(err.message).not.toContain(password);
    }
  });

  it("never logs a configured Redis password or S3 secret, in a message, an error or a field", () => {
    const redisPassword = "Zm9v/YmFy+cGFzcw==";
    const s3Secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    loadConfig(
      {
        REDIS_URL: `redis://:${encodeURIComponent(redisPassword)}@127.0.0.1:6379`,
        S3_BUCKET: "results",
        S3_ENDPOINT: "http://127.0.0.1:9000",
        S3_ACCESS_KEY_ID: "AKIDEXAMPLE",
        S3_SECRET_ACCESS_KEY: s3Secret,
      },
      ["redis", "s3"],
    );
    const { logger, text } = capturingLogger();
    logger.error({ err: new Error(`WRONGPASS for ${redisPassword}`) }, `connect redis://:${redisPassword}@10.0.0.9:6379`);
    logger.warn({ detail: { note: `signed with ${s3Secret}` } }, "s3 said no");
    logger.info({ url: `redis://user:${encodeURIComponent(redisPassword)}@h:1` }, "retrying");
    const out = text();
    expect(out).toContain("WRONGPASS for ***");
    expect(out).toContain("signed with ***");
    for (const form of [redisPassword, encodeURIComponent(redisPassword), s3Secret]) expect(out).not.toContain(form);
    // Each line is still valid JSON.
    for (const line of out.trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
  });
});
