import { describe, expect, it } from "vitest";
import { findSecrets, secretForms } from "../support/secret-scan.ts";

const secret = "qzk7Vw/xq9Lm@Tr4pQ:Kv2Hd%41Nsyj#Üb8ñé";

describe("the secrets scan", () => {
  it("finds a secret in every form a leak could print it", () => {
    for (const text of [
      `REDIS_URL: got "redis://:${secret}@127.0.0.1:6379"`,
      `redis://:${encodeURIComponent(secret)}@127.0.0.1:6379`,
      JSON.stringify({ password: secret }),
    ])
      expect(findSecrets([["log", text]], [secret]).length, text).toBeGreaterThan(0);
  });

  it("finds what a redaction that stopped at a special character left in clear", () => {
    // The bug of issue 15: the mask ended at the first '/'.
    const text = `REDIS_URL: got "redis://:***/xq9Lm@Tr4pQ:Kv2Hd%41Nsyj#Üb8ñé@127.0.0.1:6379"`;
    expect(findSecrets([["stderr", text]], [secret])).toContain('stderr: "xq9Lm"');
    expect(secretForms(secret)).toEqual(expect.arrayContaining(["qzk7Vw", "Tr4pQ", "Kv2Hd", "41Nsyj", "Üb8ñé"]));
  });

  it("finds nothing in a properly redacted text", () => {
    expect(findSecrets([["stderr", 'REDIS_URL: got "redis://:***@127.0.0.1:6379"']], [secret])).toEqual([]);
  });
});
