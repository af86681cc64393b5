import { describe, expect, it } from "vitest";
import { floatToHalf, halfToFloat } from "../../workers/engine/float16.ts";
import { PrefixCache, commonPrefix } from "../../workers/engine/item.ts";
import { HostKvSpace } from "../../workers/engine/kv-host.ts";
import { truncateView, wholeView, type KvView } from "../../workers/engine/kv.ts";

const LAYERS = 2;
const HEADS = 2;
const DIM = 3;
const space = new HostKvSpace("float32");

/** A sequence cache whose value at (array a, head h, position p, dim i) encodes all four. */
function seq(tag: number, length: number): KvView {
  const data = Array.from({ length: 2 * LAYERS }, (_, a) => {
    const arr = new Float32Array(HEADS * length * DIM);
    for (let h = 0; h < HEADS; h++)
      for (let p = 0; p < length; p++)
        for (let i = 0; i < DIM; i++) arr[(h * length + p) * DIM + i] = tag * 10000 + a * 1000 + h * 100 + p * 10 + i;
    return arr;
  });
  return wholeView(
    space.wrap(
      data,
      data.map(() => [1, HEADS, length, DIM] as const),
    ),
  );
}

describe("KV batching (host space)", () => {
  it("gathers rows left-padded and extracts them back unchanged", async () => {
    const rows = [seq(1, 4), seq(2, 2), seq(3, 5)];
    const total = 6;
    const batch = await space.gather(rows, total);
    expect([batch.rows, batch.total, batch.tensors.length]).toEqual([3, 6, 2 * LAYERS]);
    const data = await space.read(batch);
    for (let b = 0; b < rows.length; b++) {
      const view = { store: batch, row: b, start: total - rows[b]!.length, length: rows[b]!.length };
      const back = await space.extract(view);
      expect(back.total).toBe(rows[b]!.length);
      expect(await space.read(back)).toEqual(await space.read(rows[b]!.store));
      // Padding positions are zero.
      const padEnd = (b * HEADS * total + (total - rows[b]!.length)) * DIM;
      expect(Array.from(data[0]!.subarray(b * HEADS * total * DIM, padEnd)).every((x) => x === 0)).toBe(true);
    }
  });

  it("truncates a view to a prefix of positions", async () => {
    const s = seq(7, 5);
    const t = await space.extract(truncateView(s, 3));
    expect(t.total).toBe(3);
    expect((await space.read(t))[1]![(1 * 3 + 2) * 3 + 1]).toBe(7 * 10000 + 1 * 1000 + 1 * 100 + 2 * 10 + 1);
    expect(() => truncateView(s, 6)).toThrow();
  });

  it("copies a row out of a batch whose rows are padded differently, and pads empty rows", async () => {
    const batch = await space.gather([seq(1, 3), null, seq(2, 1)], 3);
    const row2 = await space.extract({ store: batch, row: 2, start: 2, length: 1 });
    expect(await space.read(row2)).toEqual(await space.read(seq(2, 1).store));
    const empty = await space.extract({ store: batch, row: 1, start: 0, length: 3 });
    expect((await space.read(empty)).every((a) => a.every((x) => x === 0))).toBe(true);
    await expect(space.gather([null], 2)).rejects.toThrow(/empty rows/);
  });

  it("counts live stores and bytes, and frees a store at its last release", async () => {
    const before = [space.liveStores, space.liveBytes];
    const s = seq(1, 4);
    const bytes = 2 * LAYERS * HEADS * 4 * DIM * 4;
    expect(s.store.bytes).toBe(bytes);
    expect([space.liveStores, space.liveBytes]).toEqual([before[0]! + 1, before[1]! + bytes]);
    s.store.retain();
    s.store.release();
    expect(space.liveStores).toBe(before[0]! + 1);
    s.store.release();
    expect([space.liveStores, space.liveBytes]).toEqual(before);
    expect(() => s.store.release()).toThrow(/released more times/);
    expect(() => s.store.retain()).toThrow(/after it was freed/);
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

  it("releases every entry on close, and an entry that completes after it too", async () => {
    const before = space.liveStores;
    const c = new PrefixCache(4);
    c.add(entry([1], true));
    let finish: () => void = () => {};
    const late = c.getOrCreate([1, 2], async () => {
      await new Promise<void>((r) => {
        finish = r;
      });
      return entry([1, 2]);
    });
    expect(space.liveStores).toBe(before + 1);
    c.close();
    expect(space.liveStores).toBe(before);
    finish();
    await expect(late).rejects.toThrow(/closed/);
    expect(space.liveStores).toBe(before);
    expect(c.size).toBe(0);
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
