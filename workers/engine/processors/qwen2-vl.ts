/**
 * Qwen2-VL and Qwen2.5-VL (whose processor is Qwen2-VL's): Qwen2VLProcessor's placeholder
 * expansion and transformers.js's tokenizer and patch flattening, over an image processor that
 * resizes and normalises as Python transformers does, plus the M-RoPE positions of the item's sequences.
 */
import { Qwen2VLImageProcessor, type RawImage } from "@huggingface/transformers";
import { ItemInputError } from "../errors.ts";
import type { ImageLimits } from "../../../shared/io/image-policy.ts";
import { type Grid, mropePositions, mropePromptPositions, type MropeTokens } from "../positions.ts";
import type { ProcessedItem, Processor } from "./processor.ts";
import { countId, requireOneImageToken } from "./prompt-checks.ts";
import { expandingTokenizer, floatTensor, loadTransformersProcessor, readItemImage, tensorIds } from "./transformers-js.ts";

const IMAGE_TOKEN = "<|image_pad|>";
const MAX_ASPECT_RATIO = 200;

/** Python's `round()`: halves go to the even neighbour (JS Math.round sends them up). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The resized (height, width) of Python's `smart_resize`
 * (transformers/models/qwen2_vl/image_processing_qwen2_vl.py): each side rounded to a multiple of
 * `factor`, then scaled down (floor) or up (ceil) into [minPixels, maxPixels]. transformers.js's
 * `smart_resize` (src/image_processors_utils.js) differs in two places: Math.round rounds halves up
 * (36×20 at factor 8: JS 24×40, Python 16×32), and it first scales up an image smaller than
 * `factor`, which Python does not. The caller checks the aspect ratio (at most 200:1).
 */
export function pythonSmartResize(
  height: number,
  width: number,
  factor: number,
  minPixels: number,
  maxPixels: number,
): [number, number] {
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return [h, w];
}

interface PreprocessorConfig {
  min_pixels?: number;
  max_pixels?: number;
  size?: { shortest_edge?: number; longest_edge?: number };
  [key: string]: unknown;
}

/**
 * preprocessor_config.json with the defaults of Python's `Qwen2VLImageProcessor.__init__` filled in.
 * Qwen publishes Qwen2-VL's file without `do_resize`, `size`, `do_normalize` or `resample`;
 * transformers.js's `ImageProcessor` then neither resizes (`do_resize` defaults to "has a size")
 * nor normalises (`do_normalize` defaults to undefined) and resamples bilinearly, where Python
 * resizes, normalises and resamples bicubically.
 */
export function withPythonQwen2VLDefaults(config: PreprocessorConfig): PreprocessorConfig {
  const minPixels = config.min_pixels ?? config.size?.shortest_edge ?? 56 * 56;
  const maxPixels = config.max_pixels ?? config.size?.longest_edge ?? 28 * 28 * 1280;
  return {
    do_resize: true,
    resample: 3,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_std: [0.26862954, 0.26130258, 0.27577711],
    do_convert_rgb: true,
    patch_size: 14,
    temporal_patch_size: 2,
    merge_size: 2,
    ...config,
    min_pixels: minPixels,
    max_pixels: maxPixels,
    size: { shortest_edge: minPixels, longest_edge: maxPixels },
  };
}

class PythonRuleQwen2VLImageProcessor extends Qwen2VLImageProcessor {
  constructor(config: PreprocessorConfig) {
    super(withPythonQwen2VLDefaults(config));
  }

  override get_resize_output_image_size(image: RawImage): [number, number] {
    const factor = this.patch_size * this.merge_size;
    const [height, width] = pythonSmartResize(image.height, image.width, factor, this.min_pixels, this.max_pixels);
    return [width, height];
  }
}

export interface Qwen2VLConfig {
  image_token_id: number;
  vision_start_token_id: number;
  vision_config: { spatial_merge_size?: number };
}

/** The processor of a Qwen2-VL or Qwen2.5-VL folder (`modelType` is the folder's, as reported). */
export async function loadQwen2VLProcessor(
  dir: string,
  modelType: "qwen2_vl" | "qwen2_5_vl",
  config: Qwen2VLConfig,
  limits?: ImageLimits,
): Promise<Processor> {
  const { imageProcessor: baseImageProcessor, tokenizer } = await loadTransformersProcessor(dir);
  const imageProcessor = new PythonRuleQwen2VLImageProcessor(baseImageProcessor.config as PreprocessorConfig);
  const imageTokenId = config.image_token_id;
  const tokens: MropeTokens = {
    imageTokenId,
    visionStartTokenId: config.vision_start_token_id,
    spatialMergeSize: config.vision_config.spatial_merge_size ?? 2,
  };
  return {
    modelType,
    imageToken: IMAGE_TOKEN,
    async process(itemId, image, prompt): Promise<ProcessedItem> {
      requireOneImageToken(itemId, prompt, IMAGE_TOKEN);
      const raw = await readItemImage(itemId, image, limits);
      const ratio = Math.max(raw.width, raw.height) / Math.min(raw.width, raw.height);
      if (ratio > MAX_ASPECT_RATIO) {
        throw new ItemInputError(
          itemId,
          "image",
          `is ${raw.width}x${raw.height}, an aspect ratio of ${ratio.toFixed(0)}:1; expected at most ${MAX_ASPECT_RATIO}:1`,
        );
      }
      const out = await imageProcessor(raw);
      const [t, h, w] = tensorIds(out.image_grid_thw) as unknown as Grid;
      // Qwen2VLProcessor's expansion: one token per merged patch (merge_size² patches each).
      const tokenCount = (t * h * w) / imageProcessor.merge_size ** 2;
      const expand = expandingTokenizer(tokenizer, IMAGE_TOKEN, IMAGE_TOKEN.repeat(tokenCount));
      const inputIds = expand(prompt);
      return {
        inputIds,
        imageTokenId,
        imageTokenCount: countId(inputIds, imageTokenId),
        pixelValues: floatTensor(out.pixel_values),
        imageGridThw: [[t, h, w]],
        mrope: mropePromptPositions(inputIds, [[t, h, w]], tokens),
        expand,
        positions: mropePositions([t, h, w], tokens),
      };
    },
  };
}
