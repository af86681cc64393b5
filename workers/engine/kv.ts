/**
 * KV cache storage. A sequence's cache is one array per layer and kind (key0, value0, key1, …),
 * each laid out [heads, length, headDim] — the batch-1 form of the decoder's
 * `past_key_values.{i}.key|value` [batch, heads, past, headDim]. A row of a batched cache is
 * addressed by a view; batches are assembled left-padded (a row's positions end at the batch's
 * last position) and rows are copied out only when a batch is rebuilt.
 *
 * float16 caches are kept as Uint16Array bit patterns (what onnxruntime-node hands out when
 * the platform lacks Float16Array), so copying never converts.
 */
import type { FloatType } from "./session-contract.ts";

export type FloatArray = Float32Array | Uint16Array;

export interface KvLayout {
  layers: number;
  heads: number;
  headDim: number;
  type: FloatType;
}

export function allocFloat(type: FloatType, length: number): FloatArray {
  return type === "float16" ? new Uint16Array(length) : new Float32Array(length);
}

/** Positions [start, start + length) of one row of a cache shaped [rows, heads, total, headDim]. */
export interface KvView {
  /** 2 × layers arrays, key then value per layer. */
  readonly data: readonly FloatArray[];
  readonly total: number;
  readonly row: number;
  readonly start: number;
  readonly length: number;
}

/** A sequence's own contiguous cache. */
export class SeqKV implements KvView {
  readonly total: number;
  readonly row = 0;
  readonly start = 0;
  constructor(
    readonly data: readonly FloatArray[],
    readonly length: number,
  ) {
    this.total = length;
  }

  /** Bytes held. */
  get bytes(): number {
    let n = 0;
    for (const a of this.data) n += a.byteLength;
    return n;
  }
}

/** The first `length` positions of a view (a causal cache's prefix is itself a valid cache). */
export function truncateView(view: KvView, length: number): KvView {
  if (length > view.length) throw new Error(`cannot take ${length} positions of a cache of ${view.length}`);
  return { data: view.data, total: view.total, row: view.row, start: view.start, length };
}

function copyPositions(
  layout: KvLayout,
  src: KvView,
  dst: FloatArray[],
  dstRow: number,
  dstTotal: number,
  dstStart: number,
): void {
  const { heads, headDim: d } = layout;
  const n = src.length * d;
  if (n === 0) return;
  for (let a = 0; a < src.data.length; a++) {
    const from = src.data[a]!;
    const to = dst[a]!;
    for (let h = 0; h < heads; h++) {
      const s = ((src.row * heads + h) * src.total + src.start) * d;
      const t = ((dstRow * heads + h) * dstTotal + dstStart) * d;
      to.set(from.subarray(s, s + n), t);
    }
  }
}

/** Copies a view out into a sequence's own cache. */
export function extractSeq(layout: KvLayout, view: KvView): SeqKV {
  const size = layout.heads * view.length * layout.headDim;
  const data = Array.from({ length: 2 * layout.layers }, () => allocFloat(layout.type, size));
  copyPositions(layout, view, data, 0, view.length, 0);
  return new SeqKV(data, view.length);
}

/**
 * A batched cache [rows.length, heads, total, headDim] with each row left-padded so that it ends
 * at position `total` (padding is zero and masked out). `total` must be >= every row's length.
 */
export function gatherRows(layout: KvLayout, rows: readonly KvView[], total: number): FloatArray[] {
  const size = rows.length * layout.heads * total * layout.headDim;
  const data = Array.from({ length: 2 * layout.layers }, () => allocFloat(layout.type, size));
  rows.forEach((view, r) => {
    copyPositions(layout, view, data, r, total, total - view.length);
  });
  return data;
}

/** Bytes one position of one sequence takes across all layers. */
export function bytesPerPosition(layout: KvLayout): number {
  return 2 * layout.layers * layout.heads * layout.headDim * (layout.type === "float16" ? 2 : 4);
}
