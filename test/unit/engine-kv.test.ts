import { describe, expect, it } from "vitest";
import { floatToHalf, halfToFloat } from "../../workers/engine/float16.ts";
import { PrefixCache, commonPrefix } from "../../workers/engine/item.ts";
import { extractSeq, gatherRows, SeqKV, truncateView, type KvLayout } from "../../workers/engine/kv.ts";

const LAYOUT: KvLayout = { layers: 2, heads: 2, headDim: 3, type: "float32" };

/** A sequence cache whose value at (array a, head h, position p, dim i) encodes all four. */
function seq(tag: number, length: number): SeqKV {
  const data = Array.from({ length: 2 * LAYOUT.layers }, (_, a) => {
    const arr = new Float32Array(LAYOUT.heads * length * LAYOUT.headDim);
    for (let h = 0; h < LAYOUT.heads; h++)
      for (let p = 0; p < length; p++)
        for (let i = 0; i < LAYOUT.headDim; i++)
          arr[(h * length + p) * LAYOUT.headDim + i] = tag * 10000 + a * 1000 + h * 100 + p * 10 + i;
    return arr;
  });
  return new SeqKV(data, length);
}

describe("KV batching", () => {
  it("gathers rows left-padded and extracts them back unchanged", () => {
    const rows = [seq(1, 4), seq(2, 2), seq(3, 5)];
    const total = 6;
    const batch = gatherRows(LAYOUT, rows, total);
    for (let b = 0; b < rows.length; b++) {
      const view = { data: batch, total, row: b, start: total - rows[b]!.length, length: rows[b]!.length };
      const back = extractSeq(LAYOUT, view);
      expect(back.length).toBe(rows[b]!.length);
      back.data.forEach((arr, a) => {
        expect(arr).toEqual(rows[b]!.data[a]);
      });
      // Padding positions are zero.
      const padEnd = (b * LAYOUT.heads * total + (total - rows[b]!.length)) * LAYOUT.headDim;
      expect(Array.from(batch[0]!.subarray(b * LAYOUT.heads * total * LAYOUT.headDim, padEnd)).every((x) => x === 0)).toBe(true);
    }
  });

  it("truncates a view to a prefix of positions", () => {
    const s = seq(7, 5);
    const t = extractSeq(LAYOUT, truncateView(s, 3));
    expect(t.length).toBe(3);
    expect(t.data[1]![(1 * 3 + 2) * 3 + 1]).toBe(7 * 10000 + 1 * 1000 + 1 * 100 + 2 * 10 + 1);
    expect(() => truncateView(s, 6)).toThrow();
  });

  it("copies a row out of a batch whose rows are padded differently", () => {
    const batch = gatherRows(LAYOUT, [seq(1, 3), seq(2, 1)], 3);
    const row1 = extractSeq(LAYOUT, { data: batch, total: 3, row: 1, start: 2, length: 1 });
    row1.data.forEach((arr, a) => {
      expect(arr).toEqual(seq(2, 1).data[a]);
    });
  });
});

describe("prefix cache", () => {
  const entry = (ids: number[], pinned = false) => ({
    ids,
    kv: seq(ids.length, ids.length),
    logits: new Float32Array(1),
    pinned,
  });

  it("finds the entry with the longest common prefix", () => {
    const c = new PrefixCache(4);
    c.add(entry([1, 2, 3], true));
    c.add(entry([1, 2, 3, 4, 5]));
    expect(c.best([1, 2, 3, 4, 9])!.common).toBe(4);
    expect(c.best([1, 2, 7])!.entry.ids).toEqual([1, 2, 3]);
    expect(c.best([9])!.common).toBe(0);
    expect(commonPrefix([1, 2], [1, 2, 3])).toBe(2);
  });

  it("evicts the least recently used entry but never a pinned one", () => {
    const c = new PrefixCache(2);
    c.add(entry([1], true));
    c.add(entry([1, 2]));
    c.add(entry([1, 2, 3]));
    expect(c.size).toBe(2);
    expect(c.best([1, 2, 3])!.common).toBe(3);
    expect(c.best([5])!.entry.pinned).toBe(true);
  });

  it("computes an entry once for concurrent callers", async () => {
    const c = new PrefixCache(4);
    let calls = 0;
    const make = async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 5));
      return entry([4, 5]);
    };
    const [a, b] = await Promise.all([c.getOrCreate([4, 5], make), c.getOrCreate([4, 5], make)]);
    expect(calls).toBe(1);
    expect(a).toBe(b);
    expect(await c.getOrCreate([4, 5], make)).toBe(a);
    expect(calls).toBe(1);
  });
});

describe("float16", () => {
  it("round-trips representable values and rounds to nearest even", () => {
    for (const v of [0, 1, -2.5, 65504, 6.103515625e-5, 2 ** -24, 0.333251953125]) expect(halfToFloat(floatToHalf(v))).toBe(v);
    expect(halfToFloat(floatToHalf(1 + 2 ** -11))).toBe(1);
    expect(halfToFloat(floatToHalf(1e6))).toBe(Infinity);
    expect(Number.isNaN(halfToFloat(floatToHalf(NaN)))).toBe(true);
  });
});
