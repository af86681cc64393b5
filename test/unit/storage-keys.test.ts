import { describe, expect, it } from "vitest";
import { assertRunId, toItemId } from "../../shared/core/ids.ts";
import {
  contentTypeOf,
  failureKey,
  imageKey,
  itemKeyOf,
  manifestKey,
  parseS3Uri,
  resultKey,
} from "../../shared/io/storage/keys.ts";

describe("key layout", () => {
  it("builds the run and image keys", () => {
    expect(manifestKey("run-1")).toBe("runs/run-1/manifest.json");
    expect(resultKey("run-1", "q1")).toBe("runs/run-1/results/q1.json");
    expect(failureKey("run-1", toItemId("q/1"))).toMatch(/^runs\/run-1\/failed\/q_1~[0-9a-f]{10}\.json$/);
    expect(itemKeyOf(resultKey("r", toItemId("a b")))).toBe(toItemId("a b"));
    const hex = "ab".repeat(32);
    expect(imageKey(hex, ".PNG")).toBe(`images/sha256/${hex}.png`);
    expect(() => imageKey("xyz", "png")).toThrow(/sha256/);
    expect(() => imageKey(hex, "p/ng")).toThrow(/extension/);
  });

  it("builds item paths only from item keys", () => {
    for (const notAKey of ["a b", "../x", "a/b", "a.b", "", "x".repeat(121)]) {
      expect(() => resultKey("r", notAKey), notAKey).toThrow(/invalid item key/);
      expect(() => failureKey("r", notAKey), notAKey).toThrow(/invalid item key/);
    }
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

  it("names an image's content type by its extension", () => {
    expect(contentTypeOf(imageKey("ab".repeat(32), "JPG"))).toBe("image/jpeg");
    expect(contentTypeOf("a.webp")).toBe("image/webp");
    expect(contentTypeOf("a.bin")).toBe("application/octet-stream");
  });
});
