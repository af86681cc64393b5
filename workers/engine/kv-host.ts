/**
 * Caches in host typed arrays: what a CPU decoder reads in place, and what any other provider
 * has to copy to the device and back on every call. Rows are copied only when a batch is
 * assembled or a row extracted; a decode step's `present` is fed back untouched.
 *
 * float16 caches are kept as Uint16Array bit patterns (what onnxruntime-node hands out when the
 * platform lacks Float16Array), so copying never converts.
 */
import ort from "onnxruntime-node";
import { allocFloat, StoreCount, type FloatArray, type KvSpace, type KvStore, type KvView } from "./kv.ts";
import type { FloatType } from "./session-contract.ts";

/** Dims [rows, heads, total, headDim] of each tensor. */
type Dims = readonly [number, number, number, number];

export class HostStore implements KvStore {
  readonly place = "host" as const;
  readonly rows: number;
  readonly total: number;
  readonly bytes: number;
  private given: readonly ort.Tensor[] | null;
  private readonly count: { retain(): void; release(): void };

  constructor(
    readonly data: readonly FloatArray[],
    readonly dims: readonly Dims[],
    readonly type: FloatType,
    counter: StoreCount,
    tensors: readonly ort.Tensor[] | null = null,
  ) {
    this.rows = dims[0]?.[0] ?? 0;
    this.total = dims[0]?.[2] ?? 0;
    this.bytes = data.reduce((n, a) => n + a.byteLength, 0);
    this.given = tensors;
    this.count = counter.track(this.bytes, () => {
      this.given = null;
    });
  }

  get tensors(): readonly ort.Tensor[] {
    this.given ??= this.data.map((d, a) => new ort.Tensor(this.type, d, [...this.dims[a]!]));
    return this.given;
  }

  retain(): KvStore {
    this.count.retain();
    return this;
  }

  release(): void {
    this.count.release();
  }
}

function hostStore(store: KvStore): HostStore {
  if (!(store instanceof HostStore)) throw new Error(`a ${store.place} KV store cannot be used by the host KV space`);
  return store;
}

/** Copies a view's positions into row `dstRow` of `dst` ([*, heads, dstTotal, headDim]) from `dstStart` on. */
function copyPositions(src: KvView, dst: readonly FloatArray[], dstRow: number, dstTotal: number, dstStart: number): void {
  const from = hostStore(src.store);
  if (src.length === 0) return;
  for (let a = 0; a < from.data.length; a++) {
    const [, heads, total, d] = from.dims[a]!;
    const n = src.length * d;
    const s0 = from.data[a]!;
    const t0 = dst[a]!;
    for (let h = 0; h < heads; h++) {
      const s = ((src.row * heads + h) * total + src.start) * d;
      const t = ((dstRow * heads + h) * dstTotal + dstStart) * d;
      t0.set(s0.subarray(s, s + n), t);
    }
  }
}

export class HostKvSpace implements KvSpace {
  readonly place = "host" as const;
  private readonly count = new StoreCount();

  constructor(private readonly type: FloatType) {}

  get liveBytes(): number {
    return this.count.liveBytes;
  }

  get liveStores(): number {
    return this.count.liveStores;
  }

  /** A store over host arrays (tests, and data computed on the host). */
  wrap(data: readonly FloatArray[], dims: readonly Dims[]): HostStore {
    return new HostStore(data, dims, this.type, this.count);
  }

  adopt(tensors: readonly ort.Tensor[]): KvStore {
    const dims = tensors.map((t) => t.dims as unknown as Dims);
    return new HostStore(
      tensors.map((t) => t.data as FloatArray),
      dims,
      this.type,
      this.count,
      tensors,
    );
  }

  private alloc(like: HostStore, rows: number, total: number): HostStore {
    const dims = like.dims.map(([, h, , d]): Dims => [rows, h, total, d]);
    return this.wrap(
      dims.map(([r, h, t, d]) => allocFloat(this.type, r * h * t * d)),
      dims,
    );
  }

  async gather(rows: readonly (KvView | null)[], total: number): Promise<KvStore> {
    const like = rows.find((r) => r !== null && r.length > 0);
    if (like === undefined || like === null) throw new Error("cannot gather a KV batch of empty rows");
    const out = this.alloc(hostStore(like.store), rows.length, total);
    rows.forEach((view, r) => {
      if (view === null) return;
      if (view.length > total) throw new Error(`a row of ${view.length} positions does not fit a batch of ${total}`);
      copyPositions(view, out.data, r, total, total - view.length);
    });
    return out;
  }

  async extract(view: KvView): Promise<KvStore> {
    const out = this.alloc(hostStore(view.store), 1, view.length);
    copyPositions(view, out.data, 0, view.length, 0);
    return out;
  }

  async read(store: KvStore): Promise<FloatArray[]> {
    return hostStore(store).data.map((a) => a.slice());
  }

  async close(): Promise<void> {
    // Host stores are their holders' and garbage collected.
  }
}
