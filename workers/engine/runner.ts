/**
 * The three ONNX sessions behind one object: vision encoder (fed by its input names), token
 * embedding (a lookup table when the vocabulary is small enough, so decode steps need no extra
 * session call), and the decoder's forward pass over a left-padded batch. Counts every call for
 * reporting.
 */
import ort from "onnxruntime-node";
import { toFloat32, fromFloat32, convertFloat } from "./float16.ts";
import type { EngineCounters } from "./counters.ts";
import type { CrossFeeds, CrossStates } from "./cross.ts";
import { allocFloat, type FloatArray, type KvLayout } from "./kv.ts";
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
  /** 2 × layers arrays [rows, heads, past, headDim], or tensors handed back from the last run; null when past = 0. */
  cache: readonly (FloatArray | ort.Tensor)[] | null;
  /** The last steps whose logits are needed (default all); fewer are computed when the decoder takes logits_to_keep. */
  keepLogits?: number;
  /** mllama: the rows' cross-attention states and mask (cross.ts). */
  cross?: CrossFeeds | undefined;
}

export interface DecoderOutput {
  /** [rows, logitSteps, vocab] as float32: the logits of each row's last `logitSteps` steps. */
  logits: Float32Array;
  logitSteps: number;
  /** present.{i}.key|value tensors [rows, heads, past + steps, headDim]. */
  present: ort.Tensor[];
  /** The data of `present`, in the same order. */
  presentData: FloatArray[];
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
  /** Rows of the embedding table: the vocabulary the decoder predicts, or more where the prompt holds ids it never predicts (mllama's `<|image|>`). */
  private readonly embedRows: number;

  constructor(
    private readonly vision: ort.InferenceSession,
    private readonly embed: ort.InferenceSession,
    private readonly decoder: ort.InferenceSession,
    readonly spec: ModelSpec,
    readonly contract: SessionContract,
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

  /**
   * One item's image features [imageTokens, hidden] in the embedding type: the processor's
   * tensors fed by the vision encoder's input names, the output read as rows of `hidden`. Throws an
   * ItemInputError naming the item unless there is one row per image token of the prompt.
   */
  async encodeImages(itemId: string, image: VisionInput, imageTokens: number): Promise<FloatArray> {
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
   * encoder's input names (kept as the runtime returns them: they are only ever fed back).
   */
  async encodeCross(itemId: string, image: VisionInput): Promise<CrossStates> {
    const cross = this.contract.cross;
    if (cross === null || image.crossImage === undefined)
      throw new Error(`item ${itemId}: this model takes no cross-attention states`);
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
    return { tensors, tiles: image.crossImage.tiles };
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
    if (this.crossNames.length > 0) {
      const cross = input.cross;
      if (cross === undefined) throw new Error(`${DECODER_FILE} takes cross-attention states; the call has none`);
      feeds[CROSS_MASK] = new ort.Tensor("int64", cross.mask, [rows, steps, this.contract.cross!.maxTiles]);
      this.crossNames.forEach((name, a) => {
        feeds[name] = cross.tensors[a]!;
      });
    }
    for (let a = 0; a < this.pastNames.length; a++) {
      const c = input.cache?.[a];
      const dims = [rows, heads, past, headDim];
      if (c === undefined || past === 0) {
        feeds[this.pastNames[a]!] = new ort.Tensor(this.layout.type, allocFloat(this.layout.type, 0), [rows, heads, 0, headDim]);
      } else if (c instanceof Float32Array || c instanceof Uint16Array) {
        feeds[this.pastNames[a]!] = new ort.Tensor(this.layout.type, c, dims);
      } else {
        feeds[this.pastNames[a]!] = c;
      }
    }
    const out = await this.decoder.run(feeds);
    this.counters.decoderCalls++;
    this.counters.forwardPasses++;
    this.counters.decoderSlots += rows * steps;
    const logitsTensor = out.logits!;
    if (logitsTensor.dims[0] !== rows || logitsTensor.dims[1] !== logitSteps || logitsTensor.dims[2] !== this.vocab) {
      throw new Error(
        `${DECODER_FILE} returned logits [${logitsTensor.dims.join(", ")}]; expected [${rows}, ${logitSteps}, ${this.vocab}]`,
      );
    }
    const present: ort.Tensor[] = [];
    const presentData: FloatArray[] = [];
    for (const name of this.presentNames) {
      const t = out[name]!;
      if (t.dims[2] !== past + steps) {
        throw new Error(`${DECODER_FILE} returned ${name} of length ${t.dims[2]}; expected ${past + steps}`);
      }
      present.push(t);
      presentData.push(t.data as FloatArray);
    }
    return { logits: toFloat32(logitsTensor.data as FloatArray, this.contract.logitsType), logitSteps, present, presentData };
  }

  async release(): Promise<void> {
    await Promise.all([this.vision.release(), this.embed.release(), this.decoder.release()]);
  }
}
