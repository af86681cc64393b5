/** The id policy: one item-id rule for S3 keys, job ids and the search, and the run-id check. */
import { describe, expect, it } from "vitest";
import { ITEM_ID_PATTERN, MAX_ITEM_ID_LENGTH, assertRunId, lineItemKey, toItemId } from "../../shared/core/ids.ts";
import { itemKeyOf, resultKey } from "../../shared/io/storage/keys.ts";

describe("item ids", () => {
  it("keeps safe ids as they are", () => {
    for (const id of ["q1", "item-0001", "a_b-c-D", "0", "s42-000001", "a_b"]) expect(toItemId(id)).toBe(id);
  });

  it("replaces unsafe characters (dots included) and appends a short hash", () => {
    expect(toItemId("../etc/passwd")).toMatch(/^_etc_passwd~[0-9a-f]{10}$/);
    expect(toItemId("a b")).toMatch(/^a_b~[0-9a-f]{10}$/);
    expect(toItemId("ünïcode/é")).toMatch(/^_n_code_~[0-9a-f]{10}$/);
    for (const dots of [".", ".."]) expect(toItemId(dots)).toMatch(/^_~[0-9a-f]{10}$/);
    expect(toItemId("a.b_c-D")).toMatch(/^a_b_c-D~[0-9a-f]{10}$/);
    expect(toItemId("...x")).toMatch(/^_x~[0-9a-f]{10}$/);
    const dotted = toItemId("a.b");
    expect(dotted).toMatch(/^a_b~[0-9a-f]{10}$/);
    expect(toItemId("a b")).not.toBe(dotted);
    expect(toItemId("photos/2024/cat:1.jpg")).toMatch(/^photos_2024_cat_1_jpg~[0-9a-f]{10}$/);
    expect(toItemId("x".repeat(500)).length).toBeLessThanOrEqual(120);
  });

  it("is deterministic and keeps distinct ids apart", () => {
    const ids = ["a b", "a/b", "a?b", "a_b", "a  b", "A b", "a b ", "x".repeat(500), "x".repeat(501), "../a", "..\\a"];
    const out = ids.map(toItemId);
    expect(new Set(out).size).toBe(ids.length);
    for (const [i, s] of out.entries()) {
      expect(toItemId(ids[i]!)).toBe(s);
      expect(s).toMatch(/^[A-Za-z0-9_~-]+$/);
      expect(s.length).toBeLessThanOrEqual(MAX_ITEM_ID_LENGTH);
    }
  });

  it("gives no id the key of another: an id crafted as another's key, or a bad line's, gets a key of its own", () => {
    for (const other of ["a b", "x".repeat(500), "ü"]) {
      const key = toItemId(other);
      expect(toItemId(key)).not.toBe(key);
    }
    for (const line of [lineItemKey("line", 5), lineItemKey("dup-line", 7)]) {
      expect(line).toMatch(ITEM_ID_PATTERN);
      expect(toItemId(line)).not.toBe(line);
    }
  });

  it("gives ids valid as search item ids, job-id segments and S3 key segments", () => {
    for (const id of [toItemId("a.b"), toItemId("x".repeat(500)), toItemId("ü"), toItemId("..")]) {
      expect(id).toMatch(ITEM_ID_PATTERN);
      expect(id).not.toMatch(/[.:/]/);
      expect(itemKeyOf(resultKey("r", id))).toBe(id); // the S3 key segment is the same id
    }
  });

  it("rejects empty ids", () => {
    expect(() => toItemId("")).toThrow(/empty/);
  });
});

describe("run ids", () => {
  it("accepts safe run ids and refuses the others instead of rewriting them", () => {
    for (const run of ["2026-11-26_a", "run.1", "r"]) expect(assertRunId(run)).toBe(run);
    for (const bad of ["", "../x", "a/b", ".hidden", "a b", "a:b", "x".repeat(129)]) {
      expect(() => assertRunId(bad), bad).toThrow(/invalid run id/);
    }
  });
});
