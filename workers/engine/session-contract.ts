/**
 * The ONNX sessions' input/output contract: the three sessions' tensor names, element types
 * and shapes checked against config.json and preprocessor_config.json. Every error names the
 * file and what was expected.
 */
import { ModelFolderError } from "./errors.ts";
import type { ModelFamily, VisionLayout } from "./model-family.ts";
import { DECODER_FILE, EMBED_FILE, VISION_FILE } from "./model-files.ts";
import type { ModelSpec, PreprocessorSpec } from "./model-folder.ts";

export type Dim = number | string;
export interface TensorSignature {
  name: string;
  /** Element type (`float32`, `float16`, `int64`, …) when the runtime reports it. */
  type?: string;
  shape?: readonly Dim[];
}
export interface SessionSignature {
  inputs: readonly TensorSignature[];
  outputs: readonly TensorSignature[];
}

export type FloatType = "float32" | "float16";

/** What the engine needs to know about the sessions, as checked against config.json. */
export interface SessionContract {
  /** Element type of the decoder's past/present KV tensors. */
  kvType: FloatType;
  /** Element type of inputs_embeds (embed_tokens output and decoder input). */
  embedType: FloatType;
  /** Element type of the vision encoder's pixel_values. */
  pixelType: FloatType;
  /** Element type of the vision encoder's image_features. */
  featureType: FloatType;
  /** Element type of the decoder's logits. */
  logitsType: FloatType;
  /** Width of the embeddings, when a session states it. */
  hiddenSize: number | null;
  /** Vocabulary size from the logits shape, when stated. */
  vocabSize: number | null;
  /** optimum-style merged decoders take a boolean `use_cache_branch` input. */
  useCacheBranch: boolean;
  /** The decoder's input naming how many last steps return logits (`num_logits_to_keep` or `logits_to_keep`), if any. */
  logitsToKeep: string | null;
  /** Rows of the decoder's position_ids: 1, or 3 for M-RoPE ([3, batch, sequence]). */
  positionAxes: 1 | 3;
  /** The vision encoder's inputs besides pixel_values, by the names it declares them under. */
  visionExtras: VisionExtra[];
  /** Vision input size [H, W] (of a tile, for tiled encoders) when stated. */
  imageSize: [number, number] | null;
  /** The cross-attention layout's keys and values (mllama); null for the image-token layouts. */
  cross: CrossContract | null;
}

/**
 * mllama: the vision encoder returns `cross_key_values.{j}.key|value` [batch, kv heads, length,
 * head_dim] for the j-th cross-attention layer, and the decoder takes them by the same names
 * (batch 1 or the decoder's batch) with `cross_attention_mask` int64 [batch, sequence, tiles].
 */
export interface CrossContract {
  /** Cross-attention layers (j = 0 … layers - 1). */
  layers: number;
  /** Keys per image: tiles × tokens per tile. */
  length: number;
  /** Tiles per image (pixel_values axis 1, and the mask's last axis). */
  maxTiles: number;
  type: FloatType;
}

export const crossKeyName = (layer: number, kind: "key" | "value") => `cross_key_values.${layer}.${kind}`;
export const CROSS_MASK = "cross_attention_mask";

/**
 * Vision encoder inputs fed from the processor's output. The patch grid goes by `grid_thw` in
 * Qwen2-VL exports and `image_grid_thw` in Qwen2.5-VL ones (transformers.js's `image_grid_thw_name`).
 */
export type VisionExtra = "pixel_attention_mask" | "grid_thw" | "image_grid_thw" | "aspect_ratio_ids" | "aspect_ratio_mask";

interface VisionExtraContract {
  /** The names the input goes by; an export declares at most one of them. */
  names: readonly VisionExtra[];
  /** Whether the layout's encoder cannot do without it. */
  required: boolean;
  type: string;
  rank: number;
  meaning: string;
}

interface VisionContract {
  pixels: { rank: number; meaning: string; channelAxis: number | null };
  extras: VisionExtraContract[];
  /** image_features, or null when the encoder returns cross-attention keys and values instead. */
  features: { rank: number; meaning: string } | null;
}

/** What each vision layout's encoder takes and returns (model-family.ts). */
const VISION_CONTRACTS: Record<VisionLayout, VisionContract> = {
  image: {
    pixels: { rank: 4, meaning: "[batch, 3, height, width]", channelAxis: 1 },
    extras: [],
    features: { rank: 3, meaning: "[batch, image tokens, hidden]" },
  },
  tiles: {
    pixels: { rank: 5, meaning: "[batch, tiles, 3, height, width]", channelAxis: 2 },
    extras: [
      { names: ["pixel_attention_mask"], required: false, type: "bool", rank: 4, meaning: "[batch, tiles, height, width]" },
    ],
    features: { rank: 3, meaning: "[tiles, image tokens per tile, hidden]" },
  },
  patches: {
    pixels: { rank: 2, meaning: "[patches, 3 x temporal x patch x patch]", channelAxis: null },
    extras: [{ names: ["grid_thw", "image_grid_thw"], required: true, type: "int64", rank: 2, meaning: "[images, 3]" }],
    features: { rank: 2, meaning: "[image tokens, hidden]" },
  },
  cross: {
    pixels: { rank: 5, meaning: "[batch, tiles, 3, height, width]", channelAxis: 2 },
    extras: [
      { names: ["aspect_ratio_ids"], required: true, type: "int64", rank: 1, meaning: "[batch]" },
      { names: ["aspect_ratio_mask"], required: true, type: "int64", rank: 2, meaning: "[batch, tiles]" },
    ],
    features: null,
  },
};

const LOGITS_TO_KEEP = ["num_logits_to_keep", "logits_to_keep"];

/** The bundled model's layout, and what a caller that names no family gets. */
const BUNDLED_LAYOUT: Pick<ModelFamily, "vision" | "positions"> = { vision: "image", positions: "linear" };

function listNames(sigs: readonly TensorSignature[]): string {
  const names = sigs.map((s) => s.name);
  return names.length <= 12 ? names.join(", ") : `${names.slice(0, 12).join(", ")}, … (${names.length} in all)`;
}

function floatType(dir: string, file: string, sig: TensorSignature, role: string): FloatType {
  if (sig.type === undefined || sig.type === "float32") return "float32";
  if (sig.type === "float16") return "float16";
  throw new ModelFolderError(dir, file, `${role} '${sig.name}' has element type ${sig.type}; expected float32 or float16`);
}

function checkType(dir: string, file: string, sig: TensorSignature, role: string, type = "int64"): void {
  if (sig.type !== undefined && sig.type !== type) {
    throw new ModelFolderError(dir, file, `${role} '${sig.name}' has element type ${sig.type}; expected ${type}`);
  }
}

function checkRank(dir: string, file: string, sig: TensorSignature, role: string, rank: number, meaning: string): void {
  if (sig.shape !== undefined && sig.shape.length !== rank) {
    throw new ModelFolderError(dir, file, `${role} '${sig.name}' has shape [${sig.shape.join(", ")}]; expected ${meaning}`);
  }
}

function checkDim(dir: string, file: string, sig: TensorSignature, role: string, axis: number, want: number, what: string): void {
  const d = sig.shape?.[axis];
  if (typeof d === "number" && d !== want) {
    throw new ModelFolderError(dir, file, `${role} '${sig.name}' has ${d} at axis ${axis}; expected ${want} (${what})`);
  }
}

const numericDim = (sig: TensorSignature | undefined, axis: number): number | null => {
  const d = sig?.shape?.[axis];
  return typeof d === "number" ? d : null;
};

export const pastKeyName = (layer: number, kind: "key" | "value") => `past_key_values.${layer}.${kind}`;
export const presentName = (layer: number, kind: "key" | "value") => `present.${layer}.${kind}`;

/**
 * Checks the three sessions' inputs and outputs against the contract of the family's layout and
 * config.json, e.g. `decoder_model_merged.onnx: expected input 'position_ids', found inputs_embeds, …`,
 * and, when `preprocessor` is given, a fixed vision input size against the size the images are resized to.
 */
export function checkSessionContract(
  dir: string,
  spec: ModelSpec,
  sigs: { vision: SessionSignature; embed: SessionSignature; decoder: SessionSignature },
  preprocessor?: Pick<PreprocessorSpec, "height" | "width">,
  layout: Pick<ModelFamily, "vision" | "positions"> = BUNDLED_LAYOUT,
): SessionContract {
  const find = (file: string, list: readonly TensorSignature[], name: string, io: "input" | "output"): TensorSignature => {
    const sig = list.find((s) => s.name === name);
    if (sig === undefined) throw new ModelFolderError(dir, file, `expected ${io} '${name}', found ${listNames(list)}`);
    return sig;
  };
  const extra = (file: string, list: readonly TensorSignature[], allowed: Set<string>, io: "input" | "output") => {
    const unknown = list.filter((s) => !allowed.has(s.name));
    if (unknown.length > 0 && io === "input") {
      throw new ModelFolderError(
        dir,
        file,
        `unexpected ${io}${unknown.length === 1 ? "" : "s"} ${unknown.map((s) => `'${s.name}'`).join(", ")}; the contract's inputs are ${[...allowed].join(", ")}`,
      );
    }
  };

  // vision_encoder.onnx: pixel_values (+ the layout's extras) -> image_features [..., D]
  const vision = VISION_CONTRACTS[layout.vision];
  const pv = find(VISION_FILE, sigs.vision.inputs, "pixel_values", "input");
  const pixelType = floatType(dir, VISION_FILE, pv, "input");
  checkRank(dir, VISION_FILE, pv, "input", vision.pixels.rank, vision.pixels.meaning);
  if (vision.pixels.channelAxis !== null) checkDim(dir, VISION_FILE, pv, "input", vision.pixels.channelAxis, 3, "RGB channels");
  const visionExtras: VisionExtra[] = [];
  for (const x of vision.extras) {
    const declared = x.names.flatMap((name) => {
      const sig = sigs.vision.inputs.find((s) => s.name === name);
      return sig === undefined ? [] : [{ name, sig }];
    });
    if (declared.length > 1) {
      const both = declared.map((d) => `'${d.name}'`).join(" and ");
      throw new ModelFolderError(dir, VISION_FILE, `declares inputs ${both}; expected one of them, not both`);
    }
    const [found] = declared;
    if (found === undefined) {
      if (!x.required) continue;
      const alternatives = x.names.map((n) => `'${n}'`).join(" or ");
      throw new ModelFolderError(
        dir,
        VISION_FILE,
        `expected input ${alternatives} (${x.type} ${x.meaning}), found ${listNames(sigs.vision.inputs)}`,
      );
    }
    checkType(dir, VISION_FILE, found.sig, "input", x.type);
    checkRank(dir, VISION_FILE, found.sig, "input", x.rank, x.meaning);
    visionExtras.push(found.name);
  }
  extra(VISION_FILE, sigs.vision.inputs, new Set(["pixel_values", ...vision.extras.flatMap((x) => x.names)]), "input");
  let feats: TensorSignature | undefined;
  let featureType: FloatType;
  let cross: CrossContract | null = null;
  if (vision.features === null) {
    cross = checkCrossOutputs(dir, spec, sigs.vision, pv);
    featureType = cross.type;
  } else {
    feats = find(VISION_FILE, sigs.vision.outputs, "image_features", "output");
    featureType = floatType(dir, VISION_FILE, feats, "output");
    checkRank(dir, VISION_FILE, feats, "output", vision.features.rank, vision.features.meaning);
    if (spec.imageSeqLength !== null && vision.features.rank === 3)
      checkDim(dir, VISION_FILE, feats, "output", 1, spec.imageSeqLength, "image_seq_length in config.json");
  }

  // embed_tokens.onnx: input_ids [B,T] int64 -> inputs_embeds [B,T,D]
  const ids = find(EMBED_FILE, sigs.embed.inputs, "input_ids", "input");
  checkType(dir, EMBED_FILE, ids, "input");
  checkRank(dir, EMBED_FILE, ids, "input", 2, "[batch, sequence]");
  extra(EMBED_FILE, sigs.embed.inputs, new Set(["input_ids"]), "input");
  const embOut = find(EMBED_FILE, sigs.embed.outputs, "inputs_embeds", "output");
  const embedType = floatType(dir, EMBED_FILE, embOut, "output");
  checkRank(dir, EMBED_FILE, embOut, "output", 3, "[batch, sequence, hidden]");

  // decoder_model_merged.onnx
  const allowed = new Set(["inputs_embeds", "attention_mask", "position_ids", "use_cache_branch", ...LOGITS_TO_KEEP]);
  const dEmb = find(DECODER_FILE, sigs.decoder.inputs, "inputs_embeds", "input");
  const decEmbedType = floatType(dir, DECODER_FILE, dEmb, "input");
  if (decEmbedType !== embedType) {
    throw new ModelFolderError(
      dir,
      DECODER_FILE,
      `input 'inputs_embeds' is ${decEmbedType} but ${EMBED_FILE} produces ${embedType}; expected the same type`,
    );
  }
  checkRank(dir, DECODER_FILE, dEmb, "input", 3, "[batch, sequence, hidden]");
  const mask = find(DECODER_FILE, sigs.decoder.inputs, "attention_mask", "input");
  checkType(dir, DECODER_FILE, mask, "input");
  checkRank(dir, DECODER_FILE, mask, "input", 2, "[batch, past + sequence]");
  const pos = find(DECODER_FILE, sigs.decoder.inputs, "position_ids", "input");
  checkType(dir, DECODER_FILE, pos, "input");
  const positionAxes = layout.positions === "mrope" ? 3 : 1;
  if (positionAxes === 3) {
    checkRank(dir, DECODER_FILE, pos, "input", 3, "[3, batch, sequence] (M-RoPE: temporal, height, width)");
    checkDim(dir, DECODER_FILE, pos, "input", 0, 3, "the three M-RoPE rows");
  } else {
    checkRank(dir, DECODER_FILE, pos, "input", 2, "[batch, sequence]");
  }
  const keep = sigs.decoder.inputs.find((s) => LOGITS_TO_KEEP.includes(s.name));
  if (keep !== undefined) checkType(dir, DECODER_FILE, keep, "input");
  let kvType: FloatType | null = null;
  for (let i = 0; i < spec.numLayers; i++) {
    for (const kind of ["key", "value"] as const) {
      const past = find(DECODER_FILE, sigs.decoder.inputs, pastKeyName(i, kind), "input");
      allowed.add(past.name);
      const t = floatType(dir, DECODER_FILE, past, "input");
      if (kvType !== null && t !== kvType) {
        throw new ModelFolderError(
          dir,
          DECODER_FILE,
          `input '${past.name}' is ${t} but other past_key_values are ${kvType}; expected one KV type`,
        );
      }
      kvType = t;
      checkRank(dir, DECODER_FILE, past, "input", 4, "[batch, kv heads, past, head_dim]");
      checkDim(dir, DECODER_FILE, past, "input", 1, spec.numKvHeads, "num_key_value_heads in config.json");
      checkDim(dir, DECODER_FILE, past, "input", 3, spec.headDim, "head_dim in config.json");
      const present = find(DECODER_FILE, sigs.decoder.outputs, presentName(i, kind), "output");
      if (floatType(dir, DECODER_FILE, present, "output") !== t) {
        throw new ModelFolderError(
          dir,
          DECODER_FILE,
          `output '${present.name}' has a different type from input '${past.name}'; expected ${t}`,
        );
      }
    }
  }
  const extraLayers = sigs.decoder.inputs.filter((s) => /^past_key_values\.\d+\./.test(s.name) && !allowed.has(s.name));
  if (extraLayers.length > 0) {
    throw new ModelFolderError(
      dir,
      DECODER_FILE,
      `has ${extraLayers.map((s) => `'${s.name}'`).join(", ")} beyond num_hidden_layers ${spec.numLayers} in config.json; expected past_key_values.0 … ${spec.numLayers - 1}`,
    );
  }
  if (cross !== null) {
    checkCrossInputs(dir, sigs.decoder, cross, allowed);
    // They are kept where the KV lives, in its element type.
    if (kvType !== null && cross.type !== kvType)
      throw new ModelFolderError(
        dir,
        VISION_FILE,
        `cross_key_values are ${cross.type} but past_key_values are ${kvType}; expected one type`,
      );
  }
  extra(DECODER_FILE, sigs.decoder.inputs, allowed, "input");
  const logits = find(DECODER_FILE, sigs.decoder.outputs, "logits", "output");
  const logitsType = floatType(dir, DECODER_FILE, logits, "output");
  checkRank(dir, DECODER_FILE, logits, "output", 3, "[batch, sequence, vocab]");

  const featureWidthAxis = (vision.features?.rank ?? 0) - 1;
  const hiddenSize = numericDim(dEmb, 2) ?? numericDim(embOut, 2) ?? numericDim(feats, featureWidthAxis) ?? spec.hiddenSize;
  const widths: [string, TensorSignature, string, number][] = [
    [EMBED_FILE, embOut, "output", 2],
    [DECODER_FILE, dEmb, "input", 2],
  ];
  if (feats !== undefined) widths.unshift([VISION_FILE, feats, "output", featureWidthAxis]);
  for (const [file, sig, role, axis] of widths) {
    if (hiddenSize !== null) checkDim(dir, file, sig, role, axis, hiddenSize, "the embedding width of the other sessions");
  }
  const vocabSize = numericDim(logits, 2) ?? spec.vocabSize;
  if (spec.vocabSize !== null && vocabSize !== null && vocabSize !== spec.vocabSize) {
    throw new ModelFolderError(
      dir,
      DECODER_FILE,
      `output 'logits' has vocabulary ${vocabSize}; expected ${spec.vocabSize} (vocab_size in config.json)`,
    );
  }
  const rank = vision.pixels.rank;
  const h = rank >= 4 ? numericDim(pv, rank - 2) : null;
  const w = rank >= 4 ? numericDim(pv, rank - 1) : null;
  const imageSize: [number, number] | null = h !== null && w !== null ? [h, w] : null;
  if (
    preprocessor !== undefined &&
    imageSize !== null &&
    (imageSize[0] !== preprocessor.height || imageSize[1] !== preprocessor.width)
  ) {
    throw new ModelFolderError(
      dir,
      "preprocessor_config.json",
      `size is ${preprocessor.height}x${preprocessor.width}; expected ${imageSize[0]}x${imageSize[1]} (pixel_values of ${VISION_FILE})`,
    );
  }
  return {
    kvType: kvType ?? "float32",
    embedType,
    pixelType,
    featureType,
    logitsType,
    hiddenSize,
    vocabSize,
    useCacheBranch: sigs.decoder.inputs.some((s) => s.name === "use_cache_branch"),
    logitsToKeep: keep?.name ?? null,
    positionAxes,
    visionExtras,
    imageSize,
    cross,
  };
}

/** The vision encoder's cross_key_values.{j}.key|value outputs, one pair per cross-attention layer of config.json. */
function checkCrossOutputs(dir: string, spec: ModelSpec, vision: SessionSignature, pixels: TensorSignature): CrossContract {
  const layers = spec.crossAttentionLayers.length;
  const maxTiles = numericDim(pixels, 1);
  if (maxTiles === null) {
    throw new ModelFolderError(
      dir,
      VISION_FILE,
      `input 'pixel_values' has no fixed tile count at axis 1; expected [batch, max tiles, 3, height, width]`,
    );
  }
  let type: FloatType | null = null;
  let length: number | null = null;
  for (let j = 0; j < layers; j++) {
    for (const kind of ["key", "value"] as const) {
      const name = crossKeyName(j, kind);
      const sig = vision.outputs.find((s) => s.name === name);
      if (sig === undefined) {
        throw new ModelFolderError(
          dir,
          VISION_FILE,
          `expected output '${name}' (cross-attention layer ${spec.crossAttentionLayers[j]} of text_config.cross_attention_layers), found ${listNames(vision.outputs)}`,
        );
      }
      const t = floatType(dir, VISION_FILE, sig, "output");
      if (type !== null && t !== type)
        throw new ModelFolderError(
          dir,
          VISION_FILE,
          `output '${name}' is ${t} but the other cross keys and values are ${type}; expected one type`,
        );
      type = t;
      checkRank(dir, VISION_FILE, sig, "output", 4, "[batch, kv heads, tiles x tokens per tile, head_dim]");
      checkDim(dir, VISION_FILE, sig, "output", 1, spec.numKvHeads, "num_key_value_heads in config.json");
      checkDim(dir, VISION_FILE, sig, "output", 3, spec.headDim, "head_dim in config.json");
      const l = numericDim(sig, 2);
      if (l === null || l % maxTiles !== 0 || (length !== null && l !== length)) {
        throw new ModelFolderError(
          dir,
          VISION_FILE,
          `output '${name}' has length ${sig.shape?.[2] ?? "unknown"} at axis 2; expected one fixed multiple of the ${maxTiles} tiles for every layer`,
        );
      }
      length = l;
    }
  }
  const extra = vision.outputs.filter((s) => /^cross_key_values\.\d+\./.test(s.name) && Number(s.name.split(".")[1]) >= layers);
  if (extra.length > 0) {
    throw new ModelFolderError(
      dir,
      VISION_FILE,
      `has ${extra.map((s) => `'${s.name}'`).join(", ")} beyond the ${layers} cross-attention layers of config.json`,
    );
  }
  return { layers, length: length!, maxTiles, type: type! };
}

/** The decoder's cross_attention_mask and cross_key_values inputs, matching the vision encoder's outputs. */
function checkCrossInputs(dir: string, decoder: SessionSignature, cross: CrossContract, allowed: Set<string>): void {
  const mask = decoder.inputs.find((s) => s.name === CROSS_MASK);
  if (mask === undefined)
    throw new ModelFolderError(
      dir,
      DECODER_FILE,
      `expected input '${CROSS_MASK}' (int64 [batch, sequence, tiles]), found ${listNames(decoder.inputs)}`,
    );
  checkType(dir, DECODER_FILE, mask, "input");
  checkRank(dir, DECODER_FILE, mask, "input", 3, "[batch, sequence, tiles]");
  checkDim(dir, DECODER_FILE, mask, "input", 2, cross.maxTiles, `the tiles of ${VISION_FILE}`);
  allowed.add(CROSS_MASK);
  for (let j = 0; j < cross.layers; j++) {
    for (const kind of ["key", "value"] as const) {
      const name = crossKeyName(j, kind);
      const sig = decoder.inputs.find((s) => s.name === name);
      if (sig === undefined)
        throw new ModelFolderError(
          dir,
          DECODER_FILE,
          `expected input '${name}' (from ${VISION_FILE}), found ${listNames(decoder.inputs)}`,
        );
      if (floatType(dir, DECODER_FILE, sig, "input") !== cross.type) {
        throw new ModelFolderError(
          dir,
          DECODER_FILE,
          `input '${name}' is ${sig.type} but ${VISION_FILE} returns ${cross.type}; expected the same type`,
        );
      }
      checkRank(dir, DECODER_FILE, sig, "input", 4, "[batch or 1, kv heads, length, head_dim]");
      checkDim(dir, DECODER_FILE, sig, "input", 2, cross.length, `the cross length of ${VISION_FILE}`);
      allowed.add(name);
    }
  }
}
