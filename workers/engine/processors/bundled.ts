/**
 * The bundled family (model_type "stagebeam-tiny"): the engine's own image preprocessing
 * (image.ts) and tokenizer, the image token expanded to the fixed image_seq_length.
 */
import type { ImageLimits } from "../../../shared/io/image-policy.ts";
import { preprocessImage } from "../image.ts";
import type { ModelFolder } from "../model-folder.ts";
import { COUNTED_POSITIONS } from "../positions.ts";
import type { EngineTokenizer } from "../tokenizer.ts";
import type { ProcessedItem, Processor } from "./processor.ts";
import { countId, requireOneImageToken } from "./prompt-checks.ts";

export function bundledProcessor(
  folder: Pick<ModelFolder, "preprocessor" | "tokenizer">,
  tokenizer: EngineTokenizer,
  limits?: ImageLimits,
): Processor {
  const imageToken = folder.tokenizer.imageToken;
  const preprocessor = folder.preprocessor;
  // The folder loader fills both for this family (a fixed resize, a fixed image-token count).
  if (preprocessor === null || tokenizer.imageSeqLength === null) throw new Error("stagebeam-tiny folder without a fixed resize");
  const { height, width } = preprocessor;
  const expand = (prompt: string) => tokenizer.imagePromptIds(prompt);
  return {
    modelType: "stagebeam-tiny",
    imageToken,
    async process(itemId, image, prompt): Promise<ProcessedItem> {
      requireOneImageToken(itemId, prompt, imageToken);
      const pixels = await preprocessImage(itemId, image, preprocessor, limits);
      const { imageTokenId } = tokenizer;
      const inputIds = expand(prompt);
      return {
        inputIds,
        imageTokenId,
        imageTokenCount: countId(inputIds, imageTokenId),
        pixelValues: { data: pixels, dims: [1, 3, height, width] },
        expand,
        positions: COUNTED_POSITIONS,
      };
    },
  };
}
