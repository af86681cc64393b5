/**
 * Cross-attention states (mllama): per item, the keys and values of every cross-attention layer,
 * computed once by the vision encoder and then fed, read-only, to every decoder call that holds a
 * sequence of that item — every candidate, judge and verifier prompt. They are never grown or
 * copied per step: a batch whose rows all belong to one item gets the item's own tensors (batch 1,
 * which the decoder broadcasts); only a batch mixing items has them gathered, one row each.
 *
 * Which tokens see the image is the processor's rule (transformers' MllamaProcessor): a token at
 * or after the sequence's `<|image|>` sees the image's real tiles; a token before it sees none.
 */
import ort from "onnxruntime-node";
import { allocFloat, type FloatArray } from "./kv.ts";
import type { CrossContract } from "./session-contract.ts";

/** One item's cross-attention keys and values: 2 × layers tensors [1, kv heads, length, head_dim], key then value per layer. */
export interface CrossStates {
  tensors: readonly ort.Tensor[];
  /** The image's real tiles. */
  tiles: number;
}

/** What a sequence of an item needs of it: the item's states and where its image token is. */
export interface CrossRow {
  states: CrossStates;
  /** Index of the sequence's image token: tokens at this position or later see the image. */
  from: number;
}

/** The decoder's cross inputs for a call: the states by input order, and the mask [rows, steps, maxTiles]. */
export interface CrossFeeds {
  tensors: ort.Tensor[];
  mask: BigInt64Array;
}

/**
 * The cross inputs of a decoder call whose row r runs tokens at positions starts[r] … starts[r] + steps - 1
 * (right padding past a row's own tokens sees nothing; its outputs are not read).
 */
export function crossFeeds(
  contract: CrossContract,
  rows: readonly CrossRow[],
  starts: readonly number[],
  lengths: readonly number[],
  steps: number,
): CrossFeeds {
  const tiles = contract.maxTiles;
  const mask = new BigInt64Array(rows.length * steps * tiles);
  rows.forEach((row, r) => {
    for (let t = 0; t < lengths[r]!; t++) {
      if (starts[r]! + t < row.from) continue;
      const at = (r * steps + t) * tiles;
      mask.fill(1n, at, at + row.states.tiles);
    }
  });
  const first = rows[0]!.states;
  if (rows.every((row) => row.states === first)) return { tensors: [...first.tensors], mask };
  // Rows of several items: each row its own item's states.
  const tensors = first.tensors.map((t, a) => {
    const per = t.size;
    const data = allocFloat(contract.type, rows.length * per);
    rows.forEach((row, r) => {
      data.set(row.states.tensors[a]!.data as FloatArray, r * per);
    });
    return new ort.Tensor(contract.type, data, [rows.length, ...t.dims.slice(1)]);
  });
  return { tensors, mask };
}
