import { describe, expect, it } from "vitest";
import {
  maskPositions,
  mropeBatchPositions,
  mropeDecodePositions,
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
