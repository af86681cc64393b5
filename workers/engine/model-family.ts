/**
 * Model families: which `model_type` values the engine knows, and for each where the folder
 * states its image-token count. All of them have the three sessions (vision_encoder,
 * embed_tokens, decoder_model_merged): the image-token families in the contract transformers.js
 * 4.3 loads for image-text-to-text models (`src/models/session_config.js`), mllama in the
 * cross-attention contract of stagebeam's exporter (models/export/README.md). Families outside
 * them are refused with the reason.
 */
import { ModelFolderError } from "./errors.ts";

export type FamilyName = "stagebeam-tiny" | "llava" | "idefics3" | "smolvlm" | "qwen2_vl" | "qwen2_5_vl" | "mllama";

/**
 * Where the number of image tokens per image comes from:
 * `config` config.json `image_seq_length`; `processor` processor_config.json `image_seq_len`
 * (per tile; Idefics3 splits an image into a size-dependent number of tiles); `image` computed
 * from each image's size by the family's processor (Qwen2-VL's grid); `cross` one token marks where
 * the image is, and the image reaches the decoder through cross-attention, not as token features (mllama).
 */
export type ImageTokenSource = "config" | "processor" | "image" | "cross";

/**
 * What the vision encoder takes: `image` pixel_values [batch, 3, H, W]; `tiles` pixel_values
 * [batch, tiles, 3, H, W] (Idefics3's splits + global image, LLaVA-OneVision's anyres patches),
 * with pixel_attention_mask [batch, tiles, H, W] where the export declares it; `patches` flattened
 * patches [patches, 3 · temporal · patch²] with the patch grid [images, 3], named grid_thw (Qwen2-VL)
 * or image_grid_thw (Qwen2.5-VL); `cross` pixel_values [batch, tiles, 3, H, W] with aspect_ratio_ids
 * and aspect_ratio_mask in, and the cross-attention keys and values of every cross-attention layer
 * out, which the decoder takes as inputs (mllama, models/export/README.md).
 */
export type VisionLayout = "image" | "tiles" | "patches" | "cross";

/** The decoder's position_ids: `linear` [batch, sequence]; `mrope` Qwen2-VL's [3, batch, sequence]. */
export type PositionKind = "linear" | "mrope";

export interface ModelFamily {
  name: FamilyName;
  imageTokens: ImageTokenSource;
  /** The image token's text when tokenizer_config.json does not name one. */
  imageToken: string;
  vision: VisionLayout;
  positions: PositionKind;
}

const FAMILIES: Record<FamilyName, Omit<ModelFamily, "name">> = {
  "stagebeam-tiny": { imageTokens: "config", imageToken: "<image>", vision: "image", positions: "linear" },
  llava: { imageTokens: "config", imageToken: "<image>", vision: "image", positions: "linear" },
  idefics3: { imageTokens: "processor", imageToken: "<image>", vision: "tiles", positions: "linear" },
  smolvlm: { imageTokens: "processor", imageToken: "<image>", vision: "tiles", positions: "linear" },
  qwen2_vl: { imageTokens: "image", imageToken: "<|image_pad|>", vision: "patches", positions: "mrope" },
  qwen2_5_vl: { imageTokens: "image", imageToken: "<|image_pad|>", vision: "patches", positions: "mrope" },
  mllama: { imageTokens: "cross", imageToken: "<|image|>", vision: "cross", positions: "linear" },
};

/** Families known and refused, with why. */
const UNSUPPORTED: Record<string, string> = {
  florence2:
    "an encoder-decoder model (its decoder cross-attends to the encoder), not the vision_encoder + embed_tokens + decoder_model_merged contract",
  llava_onevision:
    "LLaVA-OneVision's anyres tiling (a size-dependent grid of patches, unpadding and image_newline tokens) is not implemented here, and transformers.js 4.3 has no processor for it to check one against",
  llava_next: "LLaVA-NeXT's anyres tiling with image_newline tokens is implemented neither in transformers.js 4.3 nor here",
  paligemma: "not supported yet: its prefix-LM attention over the prompt and position ids from 1 are not implemented here",
  gemma3:
    "not supported yet: its image block (boi/eoi tokens, mm_tokens_per_image) and position ids from 1 are not implemented here",
};

export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.keys(FAMILIES);

/** The family of config.json's `model_type`; a folder without one is the bundled kind. */
export function modelFamily(dir: string, modelType: string | undefined): ModelFamily {
  const name = modelType ?? "stagebeam-tiny";
  if (Object.hasOwn(FAMILIES, name)) return { name: name as FamilyName, ...FAMILIES[name as FamilyName] };
  const why = UNSUPPORTED[name] ?? "a model type this engine does not know";
  throw new ModelFolderError(
    dir,
    "config.json",
    `model_type: not supported: ${name} (${why}); expected one of ${SUPPORTED_MODEL_TYPES.join(", ")}`,
  );
}
