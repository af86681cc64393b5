/**
 * mllama's cross-attention inputs of a decoder call (cross.ts): which tokens see which tiles, and
 * that one item's states are fed as they are while rows of several items get them gathered.
 */
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { crossBatch, type CrossRow } from "../../workers/engine/cross.ts";
import { HostKvSpace } from "../../workers/engine/kv-host.ts";

const space = new HostKvSpace("float32");
/** One item's states: 2 tensors [1, 1 head, 4 positions, 1], every value `fill`. */
const item = (fill: number) => ({
  names: ["cross_key_values.0.key", "cross_key_values.0.value"],
  store: space.adopt([0, 1].map(() => new ort.Tensor("float32", new Float32Array(4).fill(fill), [1, 1, 4, 1]))),
});

describe("crossBatch", () => {
  it("lets a token see the image's real tiles from the image token on, and nothing before it or in padding", async () => {
    const a: CrossRow = { inputs: item(1), tiles: 2, from: 1 };
    // Row 0 runs positions 0..2 (its image token at 1); row 1 runs one token at 5 of 3 steps (right padding after).
    const batch = await crossBatch(space, 4, [a, { ...a, tiles: 3 }], [0, 5], [3, 1], 3);
    expect(Array.from(batch.mask, Number)).toEqual([
      ...[0, 0, 0, 0],
      ...[1, 1, 0, 0],
      ...[1, 1, 0, 0],
      ...[1, 1, 1, 0],
      ...[0, 0, 0, 0],
      ...[0, 0, 0, 0],
    ]);
  });

  it("feeds one item's store itself (one row, broadcast), and gathers a row per sequence for several items", async () => {
    const a = item(1);
    const b = item(2);
    const one = await crossBatch(
      space,
      4,
      [0, 1, 2].map(() => ({ inputs: a, tiles: 1, from: 0 })),
      [0, 0, 0],
      [1, 1, 1],
      1,
    );
    expect(one.inputs.store).toBe(a.store);
    one.release();
    const before = space.liveStores;
    const mixed = await crossBatch(
      space,
      4,
      [a, b, a].map((inputs) => ({ inputs, tiles: 1, from: 0 })),
      [0, 0, 0],
      [1, 1, 1],
      1,
    );
    expect(mixed.inputs.names).toEqual(a.names);
    expect(mixed.inputs.store.rows).toBe(3);
    expect(Array.from(mixed.inputs.store.tensors[1]!.data as Float32Array)).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1]);
    expect(space.liveStores).toBe(before + 1);
    mixed.release();
    expect(space.liveStores).toBe(before);
  });
});
