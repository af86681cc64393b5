/**
 * Cross-attention states (mllama): per item, the keys and values of every cross-attention layer,
 * computed once by the vision encoder and kept as the item's read-only decoder inputs
 * (`ItemContext.decoderInputs`: a one-row store in the decoder's KV space, so they stay wherever
 * the KV lives). Every decoder call that holds a sequence of the item — every candidate, judge and
 * verifier prompt — is fed them; they are never grown or recomputed. A batch whose rows all belong
 * to one item gets the item's own store (one row, which the decoder broadcasts over the batch);
 * only a batch mixing items has them gathered, one row per sequence, for that call.
 *
 * Which tokens see the image is the processor's rule (transformers' MllamaProcessor): a token at
 * or after the sequence's `<|image|>` sees the image's real tiles; a token before it sees none.
 */
import { wholeView, type ItemDecoderInputs, type KvSpace } from "./kv.ts";

/** What a sequence of an item needs: the item's states, its real tiles, and where its image token is. */
export interface CrossRow {
  inputs: ItemDecoderInputs;
  tiles: number;
  /** Index of the sequence's image token: tokens at this position or later see the image. */
  from: number;
}

/** A decoder call's cross inputs: the states to feed, the mask [rows, steps, maxTiles], and what to free after the call. */
export interface CrossBatch {
  inputs: ItemDecoderInputs;
  mask: BigInt64Array;
  release(): void;
}

/**
 * The cross inputs of a decoder call whose row r runs `lengths[r]` tokens from position
 * `starts[r]` on (right padding past a row's own tokens sees nothing; its outputs are not read).
 */
export async function crossBatch(
  space: KvSpace,
  maxTiles: number,
  rows: readonly CrossRow[],
  starts: readonly number[],
  lengths: readonly number[],
  steps: number,
): Promise<CrossBatch> {
  const mask = new BigInt64Array(rows.length * steps * maxTiles);
  rows.forEach((row, r) => {
    for (let t = 0; t < lengths[r]!; t++) {
      if (starts[r]! + t < row.from) continue;
      const at = (r * steps + t) * maxTiles;
      mask.fill(1n, at, at + row.tiles);
    }
  });
  const first = rows[0]!.inputs;
  if (rows.every((row) => row.inputs.store === first.store)) return { inputs: first, mask, release: () => {} };
  // Rows of several items: each row its own item's states (all items' are the same length).
  const store = await space.gather(
    rows.map((row) => wholeView(row.inputs.store)),
    first.store.total,
  );
  return { inputs: { names: first.names, store }, mask, release: () => store.release() };
}
