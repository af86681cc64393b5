/**
 * The bundled family (model_type "stagebeam-tiny"): the engine's own image preprocessing
 * (image.ts) and tokenizer, the image token expanded to the fixed image_seq_length.
 */
import { expandImageTokens } from "../../../shared/core/prompts/chat.ts";
import { type ImageLimits, preprocessImage } from "../image.ts";
import type { ModelFolder } from "../model-folder.ts";
import type { EngineTokenizer } from "../tokenizer.ts";
import type { ProcessedPrompt, Processor } from "./processor.ts";
import { countId, requireOneImageToken } from "./prompt-checks.ts";

export function bundledProcessor(
  folder: Pick<ModelFolder, "preprocessor" | "tokenizer">,
  tokenizer: EngineTokenizer,
  limits?: ImageLimits,
): Processor {
  const imageToken = folder.tokenizer.imageToken;
  const preprocessor = folder.preprocessor;
  const imageSeqLength = tokenizer.imageSeqLength;
  // The folder loader fills both for this family (a fixed resize, a fixed image-token count).
  if (preprocessor === null || imageSeqLength === null) throw new Error("stagebeam-tiny folder without a fixed resize");
  const { height, width } = preprocessor;
  return {
    modelType: "stagebeam-tiny",
    imageToken,
    async process(itemId, image, prompt): Promise<ProcessedPrompt> {
      requireOneImageToken(itemId, prompt, imageToken);
      const pixels = await preprocessImage(itemId, image, preprocessor, limits);
      const { imageTokenId } = tokenizer;
      const inputIds = expandImageTokens(tokenizer.encode(prompt), imageTokenId, imageSeqLength);
      return {
        inputIds,
        imageTokenId,
        imageTokenCount: countId(inputIds, imageTokenId),
        pixelValues: { data: pixels, dims: [1, 3, height, width] },
      };
    },
  };
}
