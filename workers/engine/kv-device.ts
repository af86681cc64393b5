/**
 * Caches that stay on the device the decoder runs on (WebGPU): the decoder's `present.*` come
 * back as device buffers (`preferredOutputLocation: "gpu-buffer"`) and are fed back as its
 * `past_key_values`; assembling a batch, extracting a row and reading a cache back run as small
 * ONNX graphs on the same provider, so cache bytes never cross to the host.
 *
 * Why graphs of Slice → Pad → Concat, one per (rows, tensors, element type):
 * * onnxruntime-node can neither bind an output to an existing device buffer (no IOBinding in
 *   the Node binding) nor read a device tensor from JS (1.30's `getData()` on a WebGPU tensor
 *   aborts the process), so the only way to copy cache positions on the device is a session run
 *   that outputs new device tensors; reading back is a run whose outputs go to the CPU.
 * * A run has a fixed cost (host sync, kernel launches) far above a small copy's, so one run
 *   assembles all layers' keys and values of a batch: 2 × layers × rows Slice+Pad nodes and one
 *   Concat per tensor. Rows, start positions and padding are int64 inputs (on the CPU, where
 *   ONNX Runtime keeps shape inputs), so a graph serves every length and is built once per batch
 *   size; sessions are created on first use and kept.
 * * Each byte is copied once. A Gather over the batch axis would need the sources concatenated
 *   first (a second full copy) and cannot shift each row along the sequence axis by its own
 *   padding; GatherElements could, but needs an index tensor as large as the cache.
 */
import ort from "onnxruntime-node";
import { StoreCount, type FloatArray, type KvPlace, type KvSpace, type KvStore, type KvView } from "./kv.ts";
import { writeOnnxModel, type OnnxElem, type OnnxNode, type OnnxValue } from "./onnx-writer.ts";
import type { FloatType } from "./session-contract.ts";

const INT64_MAX = 9223372036854775807n;

export class DeviceStore implements KvStore {
  readonly place: KvPlace = "device";
  readonly rows: number;
  readonly total: number;
  readonly bytes: number;
  private held: readonly ort.Tensor[] | null;
  private readonly count: { retain(): void; release(): void };

  constructor(tensors: readonly ort.Tensor[], counter: StoreCount) {
    this.held = tensors;
    this.rows = tensors[0]?.dims[0] ?? 0;
    this.total = tensors[0]?.dims[2] ?? 0;
    this.bytes = tensors.reduce((n, t) => n + t.size * (t.type === "float16" ? 2 : 4), 0);
    this.count = counter.track(this.bytes, () => {
      for (const t of this.held!) t.dispose();
      this.held = null;
    });
  }

  get tensors(): readonly ort.Tensor[] {
    if (this.held === null) throw new Error("KV store used after it was freed");
    return this.held;
  }

  retain(): KvStore {
    this.count.retain();
    return this;
  }

  release(): void {
    this.count.release();
  }
}

function deviceStore(store: KvStore): DeviceStore {
  if (!(store instanceof DeviceStore)) throw new Error(`a ${store.place} KV store cannot be used by the device KV space`);
  return store;
}

/** The graph that gathers `rows` rows of each of `tensors` tensors into left-padded batches. */
function gatherGraph(elem: OnnxElem, tensors: number, rows: number): Uint8Array {
  const inputs: OnnxValue[] = [];
  const nodes: OnnxNode[] = [];
  const outputs: OnnxValue[] = [];
  const any4 = (p: string) => [`${p}0`, `${p}1`, `${p}2`, `${p}3`];
  for (let b = 0; b < rows; b++) {
    inputs.push({ name: `starts${b}`, elem: "int64", shape: [4] });
    inputs.push({ name: `ends${b}`, elem: "int64", shape: [4] });
    inputs.push({ name: `pads${b}`, elem: "int64", shape: [8] });
  }
  for (let t = 0; t < tensors; t++) {
    const padded: string[] = [];
    for (let b = 0; b < rows; b++) {
      const x = `x${t}_${b}`;
      inputs.push({ name: x, elem, shape: any4(`${x}_d`) });
      nodes.push({ op: "Slice", inputs: [x, `starts${b}`, `ends${b}`], outputs: [`s${t}_${b}`] });
      nodes.push({ op: "Pad", inputs: [`s${t}_${b}`, `pads${b}`], outputs: [rows === 1 ? `y${t}` : `p${t}_${b}`] });
      padded.push(`p${t}_${b}`);
    }
    if (rows > 1) nodes.push({ op: "Concat", inputs: padded, outputs: [`y${t}`], ints: { axis: 0 } });
    outputs.push({ name: `y${t}`, elem, shape: any4(`y${t}_d`) });
  }
  return writeOnnxModel({ name: `kv_gather_${elem}_${tensors}x${rows}`, opset: 17, inputs, outputs, nodes });
}

export interface DeviceKvOptions {
  /** The provider the decoder runs on, e.g. "webgpu"; the cache graphs run there too. */
  provider: string;
  type: FloatType;
}

export class DeviceKvSpace implements KvSpace {
  readonly place = "device" as const;
  private readonly count = new StoreCount();
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(private readonly options: DeviceKvOptions) {}

  get liveBytes(): number {
    return this.count.liveBytes;
  }

  get liveStores(): number {
    return this.count.liveStores;
  }

  adopt(tensors: readonly ort.Tensor[]): KvStore {
    return new DeviceStore(tensors, this.count);
  }

  /** The gather session for a batch shape; `toHost` puts its outputs in host memory (read). */
  private session(tensors: number, rows: number, toHost: boolean): Promise<ort.InferenceSession> {
    const key = `${tensors}x${rows}${toHost ? ":host" : ""}`;
    let s = this.sessions.get(key);
    if (s === undefined) {
      s = ort.InferenceSession.create(gatherGraph(this.options.type, tensors, rows), {
        executionProviders: [this.options.provider],
        preferredOutputLocation: toHost ? "cpu" : "gpu-buffer",
        logSeverityLevel: 3,
      });
      // A failed creation is not cached, so that the next call says why again.
      s.catch(() => this.sessions.delete(key));
      this.sessions.set(key, s);
    }
    return s;
  }

  private async run(rows: readonly (KvView | null)[], total: number, toHost: boolean): Promise<ort.Tensor[]> {
    const like = rows.find((r) => r !== null && r.length > 0);
    if (like === undefined || like === null) throw new Error("cannot gather a KV batch of empty rows");
    const n = deviceStore(like.store).tensors.length;
    const feeds: Record<string, ort.Tensor> = {};
    rows.forEach((view, b) => {
      const v = view ?? { store: like.store, row: like.row, start: 0, length: 0 };
      if (v.length > total) throw new Error(`a row of ${v.length} positions does not fit a batch of ${total}`);
      const src = deviceStore(v.store).tensors;
      if (src.length !== n) throw new Error(`cannot gather stores of ${src.length} and ${n} tensors into one batch`);
      const [r, s, l] = [BigInt(v.row), BigInt(v.start), BigInt(v.length)];
      feeds[`starts${b}`] = new ort.Tensor("int64", BigInt64Array.from([r, 0n, s, 0n]), [4]);
      feeds[`ends${b}`] = new ort.Tensor("int64", BigInt64Array.from([r + 1n, INT64_MAX, s + l, INT64_MAX]), [4]);
      feeds[`pads${b}`] = new ort.Tensor(
        "int64",
        BigInt64Array.from([0n, 0n, BigInt(total - v.length), 0n, 0n, 0n, 0n, 0n]),
        [8],
      );
      src.forEach((t, i) => {
        feeds[`x${i}_${b}`] = t;
      });
    });
    const session = await this.session(n, rows.length, toHost);
    const out = await session.run(feeds);
    return Array.from({ length: n }, (_, i) => out[`y${i}`]!);
  }

  async gather(rows: readonly (KvView | null)[], total: number): Promise<KvStore> {
    return this.adopt(await this.run(rows, total, false));
  }

  async extract(view: KvView): Promise<KvStore> {
    return this.adopt(await this.run([view], view.length, false));
  }

  async read(store: KvStore): Promise<FloatArray[]> {
    const rows = Array.from({ length: store.rows }, (_, row) => ({ store, row, start: 0, length: store.total }));
    return (await this.run(rows, store.total, true)).map((t) => t.data as FloatArray);
  }

  async close(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.allSettled(sessions.map(async (s) => (await s).release()));
  }
}
