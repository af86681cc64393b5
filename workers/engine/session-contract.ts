/**
 * The ONNX sessions' input/output contract: the three sessions' tensor names, element types
 * and shapes checked against config.json and preprocessor_config.json. Every error names the
 * file and what was expected.
 */
import { ModelFolderError } from "./errors.ts";
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
  /** Vision input size [H, W] when stated. */
  imageSize: [number, number] | null;
}

function listNames(sigs: readonly TensorSignature[]): string {
  const names = sigs.map((s) => s.name);
  return names.length <= 12 ? names.join(", ") : `${names.slice(0, 12).join(", ")}, … (${names.length} in all)`;
}

function floatType(dir: string, file: string, sig: TensorSignature, role: string): FloatType {
  if (sig.type === undefined || sig.type === "float32") return "float32";
  if (sig.type === "float16") return "float16";
  throw new ModelFolderError(dir, file, `${role} '${sig.name}' has element type ${sig.type}; expected float32 or float16`);
}

function checkInt64(dir: string, file: string, sig: TensorSignature, role: string): void {
  if (sig.type !== undefined && sig.type !== "int64") {
    throw new ModelFolderError(dir, file, `${role} '${sig.name}' has element type ${sig.type}; expected int64`);
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
 * Checks the three sessions' inputs and outputs against the contract and config.json, e.g.
 * `decoder_model_merged.onnx: expected input 'position_ids', found inputs_embeds, …`, and, when
 * `preprocessor` is given, a fixed vision input size against the size the images are resized to.
 */
export function checkSessionContract(
  dir: string,
  spec: ModelSpec,
  sigs: { vision: SessionSignature; embed: SessionSignature; decoder: SessionSignature },
  preprocessor?: Pick<PreprocessorSpec, "height" | "width">,
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

  // vision_encoder.onnx: pixel_values [B,3,H,W] -> image_features [B,T_img,D]
  const pv = find(VISION_FILE, sigs.vision.inputs, "pixel_values", "input");
  const pixelType = floatType(dir, VISION_FILE, pv, "input");
  checkRank(dir, VISION_FILE, pv, "input", 4, "[batch, 3, height, width]");
  checkDim(dir, VISION_FILE, pv, "input", 1, 3, "RGB channels");
  extra(VISION_FILE, sigs.vision.inputs, new Set(["pixel_values"]), "input");
  const feats = find(VISION_FILE, sigs.vision.outputs, "image_features", "output");
  const featureType = floatType(dir, VISION_FILE, feats, "output");
  checkRank(dir, VISION_FILE, feats, "output", 3, "[batch, image tokens, hidden]");
  if (spec.imageSeqLength !== null)
    checkDim(dir, VISION_FILE, feats, "output", 1, spec.imageSeqLength, "image_seq_length in config.json");

  // embed_tokens.onnx: input_ids [B,T] int64 -> inputs_embeds [B,T,D]
  const ids = find(EMBED_FILE, sigs.embed.inputs, "input_ids", "input");
  checkInt64(dir, EMBED_FILE, ids, "input");
  checkRank(dir, EMBED_FILE, ids, "input", 2, "[batch, sequence]");
  extra(EMBED_FILE, sigs.embed.inputs, new Set(["input_ids"]), "input");
  const embOut = find(EMBED_FILE, sigs.embed.outputs, "inputs_embeds", "output");
  const embedType = floatType(dir, EMBED_FILE, embOut, "output");
  checkRank(dir, EMBED_FILE, embOut, "output", 3, "[batch, sequence, hidden]");

  // decoder_model_merged.onnx
  const allowed = new Set(["inputs_embeds", "attention_mask", "position_ids", "use_cache_branch"]);
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
  checkInt64(dir, DECODER_FILE, mask, "input");
  checkRank(dir, DECODER_FILE, mask, "input", 2, "[batch, past + sequence]");
  const pos = find(DECODER_FILE, sigs.decoder.inputs, "position_ids", "input");
  checkInt64(dir, DECODER_FILE, pos, "input");
  checkRank(dir, DECODER_FILE, pos, "input", 2, "[batch, sequence]");
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
  extra(DECODER_FILE, sigs.decoder.inputs, allowed, "input");
  const logits = find(DECODER_FILE, sigs.decoder.outputs, "logits", "output");
  const logitsType = floatType(dir, DECODER_FILE, logits, "output");
  checkRank(dir, DECODER_FILE, logits, "output", 3, "[batch, sequence, vocab]");

  const hiddenSize = numericDim(dEmb, 2) ?? numericDim(embOut, 2) ?? numericDim(feats, 2) ?? spec.hiddenSize;
  for (const [file, sig, role] of [
    [VISION_FILE, feats, "output"],
    [EMBED_FILE, embOut, "output"],
    [DECODER_FILE, dEmb, "input"],
  ] as const) {
    if (hiddenSize !== null) checkDim(dir, file, sig, role, 2, hiddenSize, "the embedding width of the other sessions");
  }
  const vocabSize = numericDim(logits, 2) ?? spec.vocabSize;
  if (spec.vocabSize !== null && vocabSize !== null && vocabSize !== spec.vocabSize) {
    throw new ModelFolderError(
      dir,
      DECODER_FILE,
      `output 'logits' has vocabulary ${vocabSize}; expected ${spec.vocabSize} (vocab_size in config.json)`,
    );
  }
  const h = numericDim(pv, 2);
  const w = numericDim(pv, 3);
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
    imageSize,
  };
}
