/**
 * Model families: which `model_type` values the engine knows, and for each where the folder
 * states its image-token count. All of them share the three-session contract (vision_encoder,
 * embed_tokens, decoder_model_merged) that transformers.js 4.3 loads for image-text-to-text
 * models (`src/models/session_config.js`); families outside it are refused with the reason.
 */
import { ModelFolderError } from "./errors.ts";

export type FamilyName = "stagebeam-tiny" | "llava" | "llava_onevision" | "idefics3" | "smolvlm" | "qwen2_vl" | "qwen2_5_vl";

/**
 * Where the number of image tokens per image comes from:
 * `config` config.json `image_seq_length`; `processor` processor_config.json `image_seq_len`
 * (per tile; Idefics3 splits an image into a size-dependent number of tiles); `image` computed
 * from each image's size by the family's processor (Qwen2-VL's grid, LLaVA-OneVision's anyres tiles).
 */
export type ImageTokenSource = "config" | "processor" | "image";

/**
 * What the vision encoder takes: `image` pixel_values [batch, 3, H, W]; `tiles` pixel_values
 * [batch, tiles, 3, H, W] (Idefics3's splits + global image, LLaVA-OneVision's anyres patches),
 * with pixel_attention_mask [batch, tiles, H, W] where the export declares it; `patches` flattened
 * patches [patches, 3 · temporal · patch²] with the patch grid [images, 3], named grid_thw (Qwen2-VL)
 * or image_grid_thw (Qwen2.5-VL).
 */
export type VisionLayout = "image" | "tiles" | "patches";

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
  // anyres tiling: the patch count, and so the token count, follows the image's size and aspect.
  llava_onevision: { imageTokens: "image", imageToken: "<image>", vision: "tiles", positions: "linear" },
  idefics3: { imageTokens: "processor", imageToken: "<image>", vision: "tiles", positions: "linear" },
  smolvlm: { imageTokens: "processor", imageToken: "<image>", vision: "tiles", positions: "linear" },
  qwen2_vl: { imageTokens: "image", imageToken: "<|image_pad|>", vision: "patches", positions: "mrope" },
  qwen2_5_vl: { imageTokens: "image", imageToken: "<|image_pad|>", vision: "patches", positions: "mrope" },
};

/** Families known and refused, with why. */
const UNSUPPORTED: Record<string, string> = {
  florence2:
    "an encoder-decoder model (its decoder cross-attends to the encoder), not the vision_encoder + embed_tokens + decoder_model_merged contract",
  mllama: "Llama-3.2-Vision feeds the image through cross-attention layers of the decoder, not as image tokens in the prompt",
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
