/**
 * The KV interface: everything the engine does to caches goes through a `KvSpace`, so that the
 * same scheduler, executor and backends run with caches in host memory (`kv-host.ts`) or on the
 * device the decoder runs on (`kv-device.ts`).
 *
 * * A `KvStore` is a set of tensors shaped [rows, heads, total, headDim] — a decoder call's
 *   `present.*`, a left-padded batch assembled for a call, one sequence's own cache, or an item's
 *   read-only decoder inputs (e.g. cross-attention keys/values: any tensors whose axis 2 is the
 *   sequence axis). Stores are reference counted: whoever keeps one past the current call
 *   retains it and releases it when done; the last release frees it (on the device, disposes
 *   the tensors). Host stores are garbage collected anyway, but follow the same rules.
 * * A `KvView` is positions [start, start + length) of one row of a store: a sequence's cache
 *   inside a batch, a prefix of a cached sequence (`truncateView`), one of N candidate rows
 *   forked from one prefill (N views of the same store). Views do not own their store.
 * * The space assembles batches (`gather`: rows of different lengths, left-padded so that each
 *   ends at the batch's last position; padding is zero and masked out), copies a row out into a
 *   compact store (`extract`), wraps a decoder call's outputs (`adopt`), reads a store back to
 *   the host (`read`, for tests and tools) and counts the bytes its live stores hold.
 */
import type ort from "onnxruntime-node";
import type { FloatType } from "./session-contract.ts";

export type FloatArray = Float32Array | Uint16Array;

/** Where a space keeps its caches. */
export type KvPlace = "host" | "device";

export interface KvLayout {
  layers: number;
  heads: number;
  headDim: number;
  type: FloatType;
}

export function allocFloat(type: FloatType, length: number): FloatArray {
  return type === "float16" ? new Uint16Array(length) : new Float32Array(length);
}

/** Tensors [rows, heads, total, headDim] of one element type, reference counted. */
export interface KvStore {
  readonly place: KvPlace;
  readonly rows: number;
  /** Positions along axis 2. */
  readonly total: number;
  readonly bytes: number;
  /** The tensors, as a decoder call takes them. Valid while the store is held. */
  readonly tensors: readonly ort.Tensor[];
  /** Takes another reference; returns the store. */
  retain(): KvStore;
  /** Drops a reference; the last one frees the store. */
  release(): void;
}

/** Positions [start, start + length) of one row of a store. */
export interface KvView {
  readonly store: KvStore;
  readonly row: number;
  readonly start: number;
  readonly length: number;
}

/** The whole of a one-row store (a sequence's own cache). */
export function wholeView(store: KvStore): KvView {
  return { store, row: 0, start: 0, length: store.total };
}

/** The first `length` positions of a view (a causal cache's prefix is itself a valid cache). */
export function truncateView(view: KvView, length: number): KvView {
  if (length > view.length) throw new Error(`cannot take ${length} positions of a cache of ${view.length}`);
  return { store: view.store, row: view.row, start: view.start, length };
}

export interface KvSpace {
  readonly place: KvPlace;
  /** Wraps a decoder call's present tensors as a store (the caller's reference). */
  adopt(tensors: readonly ort.Tensor[]): KvStore;
  /**
   * A batch [rows.length, heads, total, headDim] with row b holding rows[b] left-padded to end
   * at `total` (null: an empty row, all padding). At least one row must be non-empty; `total`
   * must be >= every row's length. The caller's reference.
   */
  gather(rows: readonly (KvView | null)[], total: number): Promise<KvStore>;
  /** A view's positions copied out into a one-row store (the caller's reference). */
  extract(view: KvView): Promise<KvStore>;
  /** A store's tensors copied to host arrays (tests, tools). */
  read(store: KvStore): Promise<FloatArray[]>;
  /** Bytes held by this space's live stores. */
  readonly liveBytes: number;
  /** Live stores (each freed by its last release). */
  readonly liveStores: number;
  /** Frees what the space itself holds (the stores are their holders'). */
  close(): Promise<void>;
}

/**
 * One item's read-only decoder inputs (e.g. mllama's cross-attention keys/values, computed once
 * per item by the vision side): a one-row store in the space the decoder's KV lives in, and the
 * decoder input name of each tensor. Every row of the item (candidates, judge and verifier
 * prompts) uses the same store; a batch of rows from several items is `gather`ed from each
 * row's `wholeView(inputs.store)` to the longest item's length (left-padded, so the model's own
 * mask, e.g. a cross-attention mask, must mark each row's last `store.total` positions).
 */
export interface ItemDecoderInputs {
  readonly names: readonly string[];
  readonly store: KvStore;
}

/** Bytes one position of one sequence takes across all layers. */
export function bytesPerPosition(layout: KvLayout): number {
  return 2 * layout.layers * layout.heads * layout.headDim * (layout.type === "float16" ? 2 : 4);
}

/**
 * Reference counting and the space's tally, shared by both spaces' stores: `free` runs once,
 * at the last release.
 */
export class StoreCount {
  liveBytes = 0;
  liveStores = 0;

  track(bytes: number, free: () => void): { retain(): void; release(): void } {
    let refs = 1;
    this.liveBytes += bytes;
    this.liveStores++;
    return {
      retain: () => {
        if (refs <= 0) throw new Error("KV store retained after it was freed");
        refs++;
      },
      release: () => {
        if (refs <= 0) throw new Error("KV store released more times than it was retained");
        if (--refs > 0) return;
        this.liveBytes -= bytes;
        this.liveStores--;
        free();
      },
    };
  }
}
