/**
 * LLaVA (llava-1.5 and its onnx-community exports): transformers.js's CLIP image processor and
 * tokenizer, with the image placeholder expanded by Python transformers' count.
 */
import type { ImageLimits } from "../../../shared/io/image-policy.ts";
import { COUNTED_POSITIONS } from "../positions.ts";
import type { ProcessedItem, Processor } from "./processor.ts";
import { countId, requireOneImageToken } from "./prompt-checks.ts";
import { expandingTokenizer, floatTensor, loadTransformersProcessor, readItemImage } from "./transformers-js.ts";

export interface LlavaTokenRule {
  patchSize: number;
  numAdditionalImageTokens: number | undefined;
  visionFeatureSelectStrategy: string;
}

/**
 * Image tokens for a `height` × `width` pixel_values, as Python's `LlavaProcessor.__call__`
 * (transformers/models/llava/processing_llava.py) counts them: one per patch, plus
 * `num_additional_image_tokens` (the CLS row; 4.46 and earlier hard-coded 1, which is the fallback
 * here), minus one under the "default" strategy, whose vision tower drops the CLS row.
 * transformers.js 4.3 `LlavaProcessor._call` leaves out the subtraction, so its prompt holds one
 * token more than the encoder returns features (577 for 576 at 336/14) and generate throws.
 */
export function llavaImageTokenCount(height: number, width: number, rule: LlavaTokenRule): number {
  const patches = Math.floor(height / rule.patchSize) * Math.floor(width / rule.patchSize);
  const count = patches + (rule.numAdditionalImageTokens ?? 1);
  return rule.visionFeatureSelectStrategy === "default" ? count - 1 : count;
}

export interface LlavaConfig {
  image_token_index: number;
  vision_feature_select_strategy?: string;
}

export async function loadLlavaProcessor(dir: string, config: LlavaConfig, limits?: ImageLimits): Promise<Processor> {
  const { processor, imageProcessor, tokenizer } = await loadTransformersProcessor(dir);
  const settings = processor.config as {
    image_token?: string;
    patch_size: number;
    num_additional_image_tokens?: number;
    vision_feature_select_strategy?: string;
  };
  const imageToken = settings.image_token ?? "<image>";
  const rule: LlavaTokenRule = {
    patchSize: settings.patch_size,
    numAdditionalImageTokens: settings.num_additional_image_tokens,
    // The processor's own setting, as Python reads it; config.json's when processor_config.json has none.
    visionFeatureSelectStrategy: settings.vision_feature_select_strategy ?? config.vision_feature_select_strategy ?? "default",
  };
  const imageTokenId = config.image_token_index;
  return {
    modelType: "llava",
    imageToken,
    async process(itemId, image, prompt): Promise<ProcessedItem> {
      requireOneImageToken(itemId, prompt, imageToken);
      const raw = await readItemImage(itemId, image, limits);
      const { pixel_values } = await imageProcessor(raw);
      const [height, width] = pixel_values.dims.slice(-2) as [number, number];
      const expand = expandingTokenizer(tokenizer, imageToken, imageToken.repeat(llavaImageTokenCount(height, width, rule)));
      const inputIds = expand(prompt);
      return {
        inputIds,
        imageTokenId,
        imageTokenCount: countId(inputIds, imageTokenId),
        pixelValues: floatTensor(pixel_values),
        expand,
        positions: COUNTED_POSITIONS,
      };
    },
  };
}
