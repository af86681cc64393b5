import { describe, expect, it } from "vitest";
import {
  MAX_ITEM_KEY_LENGTH,
  assertRunId,
  failureKey,
  imageKey,
  itemKeyOf,
  manifestKey,
  parseS3Uri,
  resultKey,
  sanitizeItemId,
} from "../../shared/io/storage/keys.ts";

describe("sanitizeItemId", () => {
  it("keeps safe ids as they are", () => {
    for (const id of ["q1", "item-0001", "a.b_c-D", "0", "...x"]) expect(sanitizeItemId(id)).toBe(id);
  });

  it("replaces unsafe characters and appends a short hash", () => {
    const s = sanitizeItemId("../etc/passwd");
    expect(s).toMatch(/^\.\._etc_passwd-[0-9a-f]{10}$/);
    expect(sanitizeItemId("a b")).toMatch(/^a_b-[0-9a-f]{10}$/);
    expect(sanitizeItemId("ünïcode/é")).toMatch(/^_n_code_-[0-9a-f]{10}$/);
    for (const dots of [".", ".."]) expect(sanitizeItemId(dots)).toMatch(/^\.+-[0-9a-f]{10}$/);
  });

  it("is deterministic, idempotent and keeps distinct ids apart", () => {
    const ids = ["a b", "a/b", "a?b", "a_b", "a  b", "A b", "a b ", "x".repeat(500), "x".repeat(501), "../a", "..\\a"];
    const out = ids.map(sanitizeItemId);
    expect(new Set(out).size).toBe(ids.length);
    for (const [i, s] of out.entries()) {
      expect(sanitizeItemId(ids[i]!)).toBe(s);
      expect(sanitizeItemId(s)).toBe(s);
      expect(s).toMatch(/^[A-Za-z0-9._-]+$/);
      expect(s.length).toBeLessThanOrEqual(MAX_ITEM_KEY_LENGTH);
    }
  });

  it("rejects empty ids", () => {
    expect(() => sanitizeItemId("")).toThrow(/empty/);
  });
});

describe("key layout", () => {
  it("builds the DESIGN §2 keys", () => {
    expect(manifestKey("run-1")).toBe("runs/run-1/manifest.json");
    expect(resultKey("run-1", "q1")).toBe("runs/run-1/results/q1.json");
    expect(failureKey("run-1", "q/1")).toMatch(/^runs\/run-1\/failed\/q_1-[0-9a-f]{10}\.json$/);
    expect(itemKeyOf(resultKey("r", "a b"))).toBe(sanitizeItemId("a b"));
    const hex = "ab".repeat(32);
    expect(imageKey(hex, ".PNG")).toBe(`images/sha256/${hex}.png`);
    expect(() => imageKey("xyz", "png")).toThrow(/sha256/);
    expect(() => imageKey(hex, "p/ng")).toThrow(/extension/);
  });

  it("refuses unsafe run ids instead of rewriting them", () => {
    expect(assertRunId("2026-11-26_a")).toBe("2026-11-26_a");
    for (const bad of ["", "../x", "a/b", ".hidden", "a b"]) expect(() => manifestKey(bad), bad).toThrow(/invalid run id/);
  });

  it("parses s3 URIs", () => {
    expect(parseS3Uri("s3://bucket-1/a/b.png")).toEqual({ bucket: "bucket-1", key: "a/b.png" });
    expect(parseS3Uri("s3://bucket-1/")).toBeUndefined();
    expect(parseS3Uri("/local/a.png")).toBeUndefined();
  });
});
