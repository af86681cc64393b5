import { describe, expect, it } from "vitest";
import {
  COUNTED_POSITIONS,
  decodePositionIds,
  maskPositions,
  mropeBatchPositions,
  mropeDecodePositions,
  mropePositions,
  mropePromptPositions,
} from "../../workers/engine/positions.ts";

describe("maskPositions", () => {
  const mask = [
    [0, 0, 1, 1, 1],
    [1, 1, 1, 1, 1],
  ];

  it("counts real tokens from 0 (Llama, Idefics3); padded slots get 1", () => {
    expect(maskPositions(mask, 0)).toEqual([
      [1, 1, 0, 1, 2],
      [0, 1, 2, 3, 4],
    ]);
  });

  it("counts from 1 for PaliGemma and Gemma 3", () => {
    expect(maskPositions(mask, 1)).toEqual([
      [1, 1, 1, 2, 3],
      [1, 2, 3, 4, 5],
    ]);
  });

  it("gives a decode step the count of real tokens before it, padding and all in the cache", () => {
    const step = maskPositions(
      mask.map((row) => [...row, 1]),
      0,
    ).map((row) => row.at(-1));
    expect(step).toEqual([3, 5]);
  });
});

describe("M-RoPE", () => {
  const tokens = { imageTokenId: 9, visionStartTokenId: 8, spatialMergeSize: 2 };
  // text, <|vision_start|>, a 2×3 merged grid (patch grid 4×6), <|vision_end|>, text
  const ids = [1, 2, 8, ...Array(6).fill(9), 7, 3];

  it("places an image block on t, h and w from its start and counts text on from the block's largest position", () => {
    const { positions, ropeDelta } = mropePromptPositions(ids, [[1, 4, 6]], tokens);
    expect(positions).toEqual([
      [0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7],
      [0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7],
      [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7],
    ]);
    expect(ropeDelta).toBe(8 - ids.length);
  });

  it("copies plain 1-D positions to the three rows for a text-only prompt", () => {
    expect(mropePromptPositions([1, 2, 3], [], tokens)).toEqual({
      positions: [
        [0, 1, 2],
        [0, 1, 2],
        [0, 1, 2],
      ],
      ropeDelta: 0,
    });
  });

  it("refuses more image blocks than grids", () => {
    expect(() => mropePromptPositions(ids, [], tokens)).toThrow(/more image blocks/);
  });

  it("shifts a left-padded entry's delta by its padding, so decode positions continue its own count", () => {
    const padded = [0, 0, ...ids];
    const mask = [0, 0, ...ids.map(() => 1)];
    const batch = mropeBatchPositions([padded], [mask], [[[1, 4, 6]]], tokens);
    expect(batch.positions.map((axis) => axis[0]!.slice(0, 2))).toEqual([
      [1, 1],
      [1, 1],
      [1, 1],
    ]);
    expect(batch.ropeDeltas).toEqual([8 - padded.length]);
    expect(mropeDecodePositions(padded.length, batch.ropeDeltas)).toEqual([[[8]], [[8]], [[8]]]);
  });
});

describe("an item's position rule", () => {
  const tokens = { imageTokenId: 9, visionStartTokenId: 8, spatialMergeSize: 2 };
  // text, <|vision_start|>, a 2×3 merged grid (patch grid 4×6), then text.
  const sequence = [1, 2, 8, ...Array(6).fill(9), 3, 4, 5];

  it("counts from 0 over the whole sequence, and from the cache length when a prefix is cached", () => {
    expect(COUNTED_POSITIONS.span(sequence, 0)).toEqual([sequence.map((_, i) => i)]);
    expect(COUNTED_POSITIONS.span(sequence, 10)).toEqual([[10, 11]]);
    expect(COUNTED_POSITIONS.decodeOffset(sequence)).toBe(0);
  });

  it("gives a cached continuation the M-RoPE positions of the whole sequence, and its rope delta to decoding", () => {
    const rule = mropePositions([1, 4, 6], tokens);
    const whole = mropePromptPositions(sequence, [[1, 4, 6]], tokens);
    expect(rule.span(sequence, 0)).toEqual(whole.positions);
    expect(rule.span(sequence, 9)).toEqual(whole.positions.map((row) => row.slice(9)));
    // After the block (offset 3, max(1, 2, 3) = 3): positions 6, 7, 8 for the last three tokens.
    expect(rule.span(sequence, 9)).toEqual([0, 1, 2].map(() => [6, 7, 8]));
    expect(rule.decodeOffset(sequence)).toBe(whole.ropeDelta);
    expect(rule.decodeOffset(sequence)).toBe(9 - sequence.length);
  });

  it("lays a decode step's ids out axis by axis: [axes, rows, 1]", () => {
    const rows = [
      { length: 12, offset: -3 },
      { length: 5, offset: 0 },
    ];
    expect(Array.from(decodePositionIds(rows, 1), Number)).toEqual([9, 5]);
    expect(Array.from(decodePositionIds(rows, 3), Number)).toEqual([9, 5, 9, 5, 9, 5]);
  });
});
