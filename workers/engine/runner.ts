/**
 * The three ONNX sessions behind one object: vision encoder (fed by its input names), token
 * embedding (a lookup table when the vocabulary is small enough, so decode steps need no extra
 * session call), and the decoder's forward pass over a left-padded batch. Counts every call for
 * reporting.
 */
import ort from "onnxruntime-node";
import { toFloat32, fromFloat32, convertFloat } from "./float16.ts";
import type { EngineCounters } from "./counters.ts";
import { allocFloat, type FloatArray, type ItemDecoderInputs, type KvLayout, type KvSpace, type KvStore } from "./kv.ts";
import { ItemInputError } from "./errors.ts";
import { DECODER_FILE, VISION_FILE } from "./model-files.ts";
import type { ModelSpec } from "./model-folder.ts";
import type { VisionInput } from "./processors/processor.ts";
import {
  CROSS_MASK,
  crossKeyName,
  pastKeyName,
  presentName,
  type SessionContract,
  type VisionExtra,
} from "./session-contract.ts";

/** The tensor of a vision input besides pixel_values, from the processor's output. */
function visionExtraTensor(name: VisionExtra, image: VisionInput): ort.Tensor {
  const { pixelAttentionMask: mask, imageGridThw: grid, crossImage: cross } = image;
  if (name === "pixel_attention_mask" && mask !== undefined) return new ort.Tensor("bool", mask.data, mask.dims);
  if ((name === "grid_thw" || name === "image_grid_thw") && grid !== undefined)
    return new ort.Tensor("int64", BigInt64Array.from(grid.flat(), BigInt), [grid.length, 3]);
  if (name === "aspect_ratio_ids" && cross !== undefined)
    return new ort.Tensor("int64", BigInt64Array.from([BigInt(cross.aspectRatioId)]), [1]);
  if (name === "aspect_ratio_mask" && cross !== undefined)
    return new ort.Tensor("int64", BigInt64Array.from(cross.aspectRatioMask, BigInt), [1, cross.aspectRatioMask.length]);
  throw new Error(`${VISION_FILE} takes ${name}, which this family's processor does not produce`);
}

export interface DecoderInput {
  rows: number;
  /** New tokens per row. */
  steps: number;
  /** Past positions per row (the cache length). */
  past: number;
  /** [rows, steps, hidden] in the embedding type. */
  embeds: FloatArray;
  /** [rows, past + steps]. */
  mask: BigInt64Array;
  /** [axes, rows, steps]: one row of ids per axis the decoder's position_ids has (1, or 3 for M-RoPE). */
  positions: BigInt64Array;
  /** 2 × layers tensors [rows, heads, past, headDim] (key then value per layer) in the runner's KV space; null when past = 0. */
  cache: KvStore | null;
  /** The last steps whose logits are needed (default all); fewer are computed when the decoder takes logits_to_keep. */
  keepLogits?: number;
  /**
   * The rows' items' read-only decoder inputs gathered into one batch (see ItemDecoderInputs),
   * fed by their names; the caller keeps its reference.
   */
  itemInputs?: ItemDecoderInputs | undefined;
  /** mllama: which tiles each new token sees, [rows, steps, tiles] (cross.ts). */
  crossMask?: BigInt64Array | undefined;
}

export interface DecoderOutput {
  /** [rows, logitSteps, vocab] as float32: the logits of each row's last `logitSteps` steps. */
  logits: Float32Array;
  logitSteps: number;
  /** present.{i}.key|value [rows, heads, past + steps, headDim] in the runner's KV space: the caller's reference. */
  present: KvStore;
}

export class ModelRunner {
  readonly layout: KvLayout;
  readonly hidden: number;
  readonly vocab: number;
  readonly counters: EngineCounters;
  private embedTable: FloatArray | null = null;
  private readonly pastNames: string[] = [];
  private readonly presentNames: string[] = [];
  private readonly crossNames: string[] = [];
  /** Rows of the embedding table: the vocabulary the decoder predicts, or more where prompts hold ids it never predicts (mllama's `<|image|>`). */
  private readonly embedRows: number;

  constructor(
    private readonly vision: ort.InferenceSession,
    private readonly embed: ort.InferenceSession,
    private readonly decoder: ort.InferenceSession,
    readonly spec: ModelSpec,
    readonly contract: SessionContract,
    /** Where the decoder's KV lives (its present.* come back there, its past_key_values are fed from there). */
    readonly kv: KvSpace,
    hidden: number,
    vocab: number,
    counters: EngineCounters,
    embedRows = vocab,
  ) {
    this.embedRows = embedRows;
    for (let j = 0; j < (contract.cross?.layers ?? 0); j++)
      this.crossNames.push(crossKeyName(j, "key"), crossKeyName(j, "value"));
    this.layout = { layers: spec.numLayers, heads: spec.numKvHeads, headDim: spec.headDim, type: contract.kvType };
    this.hidden = hidden;
    this.vocab = vocab;
    this.counters = counters;
    for (let i = 0; i < spec.numLayers; i++) {
      for (const kind of ["key", "value"] as const) {
        this.pastNames.push(pastKeyName(i, kind));
        this.presentNames.push(presentName(i, kind));
      }
    }
  }

  /** Runs embed_tokens once over the whole vocabulary and keeps the table (when it is at most maxBytes). */
  async loadEmbeddingTable(maxBytes: number): Promise<boolean> {
    const bytes = this.embedRows * this.hidden * (this.contract.embedType === "float16" ? 2 : 4);
    if (bytes > maxBytes) return false;
    const ids = Array.from({ length: this.embedRows }, (_, i) => i);
    this.embedTable = await this.embedSession(ids);
    return true;
  }

  get hasEmbeddingTable(): boolean {
    return this.embedTable !== null;
  }

  private async embedSession(ids: readonly number[]): Promise<FloatArray> {
    const input = new ort.Tensor(
      "int64",
      BigInt64Array.from(ids, (x) => BigInt(x)),
      [1, ids.length],
    );
    const out = await this.embed.run({ input_ids: input });
    this.counters.embedCalls++;
    this.counters.forwardPasses++;
    const t = out.inputs_embeds!;
    if (t.dims[2] !== this.hidden) throw new Error(`embed_tokens.onnx returned width ${t.dims[2]}; expected ${this.hidden}`);
    return t.data as FloatArray;
  }

  /** Embeddings [ids.length, hidden] in the embedding type. */
  async embedIds(ids: readonly number[]): Promise<FloatArray> {
    const table = this.embedTable;
    if (table === null) return this.embedSession(ids);
    const d = this.hidden;
    const out = allocFloat(this.contract.embedType, ids.length * d);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id < 0 || id >= this.embedRows) throw new Error(`token id ${id} is outside the embedding table of ${this.embedRows}`);
      out.set(table.subarray(id * d, (id + 1) * d), i * d);
    }
    return out;
  }

  /** The vision encoder on the processor's tensors, fed by the encoder's input names. */
  private async runVision(image: VisionInput): Promise<ort.InferenceSession.OnnxValueMapType> {
    const { pixelValues } = image;
    const feeds: Record<string, ort.Tensor> = {
      pixel_values: new ort.Tensor(
        this.contract.pixelType,
        fromFloat32(pixelValues.data, this.contract.pixelType),
        pixelValues.dims,
      ),
    };
    for (const name of this.contract.visionExtras) feeds[name] = visionExtraTensor(name, image);
    const out = await this.vision.run(feeds);
    this.counters.visionCalls++;
    this.counters.forwardPasses++;
    return out;
  }

  /**
   * One item's image features [imageTokens, hidden] in the embedding type: the processor's
   * tensors fed by the vision encoder's input names, the output read as rows of `hidden`. Throws an
   * ItemInputError naming the item unless there is one row per image token of the prompt.
   */
  async encodeImages(itemId: string, image: VisionInput, imageTokens: number): Promise<FloatArray> {
    const out = await this.runVision(image);
    const t = out.image_features!;
    const rows = t.dims.length >= 2 && t.dims.at(-1) === this.hidden ? t.size / this.hidden : null;
    if (rows !== imageTokens) {
      throw new ItemInputError(
        itemId,
        "image",
        `${VISION_FILE} returned image_features [${t.dims.join(", ")}]${rows === null ? "" : `, ${rows} rows`}; the prompt holds ${imageTokens} image tokens, so expected ${imageTokens} rows of width ${this.hidden}`,
      );
    }
    return convertFloat(t.data as FloatArray, this.contract.featureType, this.contract.embedType);
  }

  /**
   * mllama: one item's cross-attention keys and values, from the processor's tiles by the vision
   * encoder's input names, adopted into the decoder's KV space as the item's read-only decoder
   * inputs (the caller's reference).
   */
  async encodeCross(itemId: string, image: VisionInput): Promise<ItemDecoderInputs> {
    const cross = this.contract.cross;
    if (cross === null || image.crossImage === undefined)
      throw new Error(`item ${itemId}: this model takes no cross-attention states`);
    const out = await this.runVision(image);
    const tensors = this.crossNames.map((name) => {
      const t = out[name]!;
      if (t.dims[0] !== 1 || t.dims[2] !== cross.length) {
        throw new ItemInputError(
          itemId,
          "image",
          `${VISION_FILE} returned ${name} [${t.dims.join(", ")}]; expected [1, heads, ${cross.length}, head_dim]`,
        );
      }
      return t;
    });
    return { names: this.crossNames, store: this.kv.adopt(tensors) };
  }

  /** One decoder forward pass. */
  async forward(input: DecoderInput): Promise<DecoderOutput> {
    const { rows, steps, past } = input;
    const { heads, headDim } = this.layout;
    const axes = this.contract.positionAxes;
    if (input.positions.length !== axes * rows * steps) {
      throw new Error(`position ids: got ${input.positions.length}, expected ${axes} x ${rows} rows x ${steps} steps`);
    }
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor(this.contract.embedType, input.embeds, [rows, steps, this.hidden]),
      attention_mask: new ort.Tensor("int64", input.mask, [rows, past + steps]),
      position_ids: new ort.Tensor("int64", input.positions, axes === 1 ? [rows, steps] : [axes, rows, steps]),
    };
    if (this.contract.useCacheBranch) feeds.use_cache_branch = new ort.Tensor("bool", Uint8Array.from([past > 0 ? 1 : 0]), [1]);
    const keepName = this.contract.logitsToKeep;
    const logitSteps = keepName === null ? steps : Math.min(steps, input.keepLogits ?? steps);
    if (keepName !== null) feeds[keepName] = new ort.Tensor("int64", BigInt64Array.from([BigInt(logitSteps)]), []);
    const cache = past === 0 ? null : input.cache;
    if (cache !== null && (cache.rows !== rows || cache.total !== past || cache.tensors.length !== this.pastNames.length)) {
      throw new Error(
        `KV cache of ${cache.tensors.length} tensors [${cache.rows}, ·, ${cache.total}, ·]; expected ${this.pastNames.length} of [${rows}, ·, ${past}, ·]`,
      );
    }
    for (let a = 0; a < this.pastNames.length; a++) {
      feeds[this.pastNames[a]!] =
        cache?.tensors[a] ?? new ort.Tensor(this.layout.type, allocFloat(this.layout.type, 0), [rows, heads, 0, headDim]);
    }
    if (this.contract.cross !== null) {
      if (input.itemInputs === undefined || input.crossMask === undefined)
        throw new Error(`${DECODER_FILE} takes cross-attention states and their mask; the call has none`);
      feeds[CROSS_MASK] = new ort.Tensor("int64", input.crossMask, [rows, steps, this.contract.cross.maxTiles]);
    }
    const extra = input.itemInputs;
    if (extra !== undefined) {
      // One row is one item's inputs for every row of the call: the decoder broadcasts it (mllama's graphs do).
      if (extra.store.rows !== rows && extra.store.rows !== 1)
        throw new Error(`item decoder inputs of ${extra.store.rows} rows; expected ${rows} or 1`);
      extra.names.forEach((name, a) => {
        feeds[name] = extra.store.tensors[a]!;
      });
    }
    const out = await this.decoder.run(feeds);
    this.counters.decoderCalls++;
    this.counters.forwardPasses++;
    this.counters.decoderSlots += rows * steps;
    const present = this.kv.adopt(this.presentNames.map((name) => out[name]!));
    const logitsTensor = out.logits!;
    const problem =
      logitsTensor.dims[0] !== rows || logitsTensor.dims[1] !== logitSteps || logitsTensor.dims[2] !== this.vocab
        ? `logits [${logitsTensor.dims.join(", ")}]; expected [${rows}, ${logitSteps}, ${this.vocab}]`
        : present.total !== past + steps
          ? `present.* of length ${present.total}; expected ${past + steps}`
          : null;
    if (problem !== null) {
      present.release();
      throw new Error(`${DECODER_FILE} returned ${problem}`);
    }
    return { logits: toFloat32(logitsTensor.data as FloatArray, this.contract.logitsType), logitSteps, present };
  }

  async release(): Promise<void> {
    await this.kv.close();
    await Promise.all([this.vision.release(), this.embed.release(), this.decoder.release()]);
  }
}
