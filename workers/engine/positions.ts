/**
 * Decoder position ids per family, for left-padded batches: rows are batch entries, columns
 * tokens; a mask entry is 1 for a real token and 0 for padding. Padded slots get position 1, as
 * Python's `attention_mask.cumsum(-1) - 1` then `masked_fill_(mask == 0, 1)` leaves them; they are
 * masked out, so the value only has to be a valid position.
 */
import type { MropePrompt } from "./processors/processor.ts";

const PADDED_POSITION = 1;

/**
 * 1-D positions counted over the real tokens: 0-based for Llama-style decoders (LLaVA, Idefics3 /
 * SmolVLM), 1-based for PaliGemma and Gemma 3 (`position_ids += 1` in their Python
 * prepare_inputs_for_generation; transformers.js `create_position_ids` with start_index 1).
 * `mask` covers the whole sequence so far (cache + new tokens); for a decode step take the last
 * column(s) of the result.
 */
export function maskPositions(mask: readonly (readonly number[])[], firstPosition: 0 | 1): number[][] {
  return mask.map((row) => {
    let next = firstPosition;
    return row.map((m) => (m === 0 ? PADDED_POSITION : next++));
  });
}

export interface MropeTokens {
  imageTokenId: number;
  visionStartTokenId: number;
  /** vision_config.spatial_merge_size: the image block's grid is the patch grid divided by it. */
  spatialMergeSize: number;
}

export type Grid = readonly [t: number, h: number, w: number];

/**
 * Qwen2-VL's M-RoPE positions for one unpadded prompt (`Qwen2VLForConditionalGeneration.get_rope_index`
 * in transformers/models/qwen2_vl/modeling_qwen2_vl.py): text counts on from the last position + 1
 * on all three rows; an image block (the image tokens after `<|vision_start|>`) starting at
 * position `offset` gets t = offset + frame, h = offset + row, w = offset + column over the merged
 * grid. `grids` are the images' `image_grid_thw` in prompt order. `ropeDelta` = max position + 1 −
 * length, so a decode step's position is its cache length + ropeDelta.
 */
export function mropePromptPositions(ids: readonly number[], grids: readonly Grid[], tokens: MropeTokens): MropePrompt {
  const rows: [number[], number[], number[]] = [[], [], []];
  let next = 0;
  const pushText = (count: number) => {
    for (let i = 0; i < count; i++) for (const row of rows) row.push(next + i);
    next += count;
  };
  let start = 0;
  let image = 0;
  for (let i = 0; i + 1 < ids.length; i++) {
    if (ids[i] !== tokens.visionStartTokenId || ids[i + 1] !== tokens.imageTokenId) continue;
    const grid = grids[image++];
    if (grid === undefined) throw new Error(`prompt holds more image blocks than the ${grids.length} image grids given`);
    pushText(i + 1 - start);
    const [t, h, w] = [grid[0], grid[1] / tokens.spatialMergeSize, grid[2] / tokens.spatialMergeSize];
    const offset = next;
    for (let f = 0; f < t; f++) {
      for (let r = 0; r < h; r++) {
        for (let c = 0; c < w; c++) {
          rows[0].push(offset + f);
          rows[1].push(offset + r);
          rows[2].push(offset + c);
        }
      }
    }
    next = offset + Math.max(t, h, w);
    start = i + 1 + t * h * w;
    i = start - 1;
  }
  if (start > ids.length) throw new Error(`an image block runs past the end of the ${ids.length}-token prompt`);
  pushText(ids.length - start);
  return { positions: rows, ropeDelta: next - ids.length };
}

export interface MropeBatch {
  /** [3][batch][seq]: the decoder's position_ids for the prompt step. */
  positions: number[][][];
  /** Per batch entry: max position + 1 − the padded length, carried through decoding. */
  ropeDeltas: number[];
}

/** M-RoPE positions of a left-padded batch of prompts: each entry's real tokens as mropePromptPositions places them. */
export function mropeBatchPositions(
  ids: readonly (readonly number[])[],
  mask: readonly (readonly number[])[],
  grids: readonly (readonly Grid[])[],
  tokens: MropeTokens,
): MropeBatch {
  const positions: number[][][] = [[], [], []];
  const ropeDeltas: number[] = [];
  ids.forEach((row, b) => {
    const maskRow = mask[b]!;
    const real = row.filter((_, j) => maskRow[j] !== 0);
    const prompt = mropePromptPositions(real, grids[b] ?? [], tokens);
    for (let axis = 0; axis < 3; axis++) {
      let k = 0;
      positions[axis]!.push(maskRow.map((m) => (m === 0 ? PADDED_POSITION : prompt.positions[axis]![k++]!)));
    }
    ropeDeltas.push(prompt.ropeDelta + real.length - row.length);
  });
  return { positions, ropeDeltas };
}

/** A decode step's M-RoPE position_ids [3][batch][1]: the cache length + each entry's rope delta, on all three rows. */
export function mropeDecodePositions(pastLength: number, ropeDeltas: readonly number[]): number[][][] {
  const column = ropeDeltas.map((delta) => [pastLength + delta]);
  return [column, column.map((p) => [...p]), column.map((p) => [...p])];
}

/**
 * How the decoder positions the sequences of one item (the question's prompt, accepted prefixes,
 * candidates, judge prompts: each starts with the item's image). A token's position depends only
 * on the ids up to it, so a cached prefix keeps its positions.
 */
export interface PositionRule {
  /** Rows of position ids: 1, or 3 for M-RoPE. */
  readonly axes: 1 | 3;
  /** Position ids of `ids[from:]` within the sequence `ids`, one array per row. */
  span(ids: readonly number[], from: number): number[][];
  /** What a decode step's position is beyond the cache length, on every row. */
  decodeOffset(ids: readonly number[]): number;
}

/** 0-based positions counted over the sequence (Llama-style decoders: the bundled model, LLaVA, Idefics3 / SmolVLM). */
export const COUNTED_POSITIONS: PositionRule = {
  axes: 1,
  span: (ids, from) => [Array.from({ length: ids.length - from }, (_, i) => from + i)],
  decodeOffset: () => 0,
};

/** Qwen2-VL's M-RoPE over sequences that each hold the item's one image block (`grid` its image_grid_thw). */
export function mropePositions(grid: Grid, tokens: MropeTokens): PositionRule {
  return {
    axes: 3,
    span: (ids, from) => mropePromptPositions(ids, [grid], tokens).positions.map((row) => row.slice(from)),
    decodeOffset: (ids) => mropePromptPositions(ids, [grid], tokens).ropeDelta,
  };
}

/** A decode step's position_ids [axes, rows, 1]: each row's cache length + its offset, on every axis. */
export function decodePositionIds(rows: readonly { length: number; offset: number }[], axes: number): BigInt64Array {
  const out = new BigInt64Array(axes * rows.length);
  rows.forEach((r, b) => {
    for (let a = 0; a < axes; a++) out[a * rows.length + b] = BigInt(r.length + r.offset);
  });
  return out;
}
