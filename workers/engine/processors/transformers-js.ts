/**
 * What every family processor takes from transformers.js: the library configured to read local
 * folders only, a folder's AutoProcessor, the item's image decoded the way RawImage.read decodes
 * it, and its tensors as plain arrays.
 */
import path from "node:path";
import { AutoProcessor, env, type Processor, RawImage, type Tensor } from "@huggingface/transformers";
import { ModelFolderError } from "../errors.ts";
import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from "../../../shared/io/image-policy.ts";
import { checkImage, corruptImageError } from "../image.ts";
import type { BoolTensor, FloatTensor } from "./processor.ts";

// A model folder is all there is: nothing is fetched, nothing is cached outside it.
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.useFSCache = false;

export interface LoadedProcessor {
  processor: Processor;
  imageProcessor: NonNullable<Processor["image_processor"]>;
  tokenizer: NonNullable<Processor["tokenizer"]>;
}

/** The folder's processor as transformers.js builds it (`processor_class` of preprocessor_config.json). */
export async function loadTransformersProcessor(dir: string): Promise<LoadedProcessor> {
  // An absolute path: a relative "owner/name" would be read as a hub id under env.localModelPath.
  const processor = await AutoProcessor.from_pretrained(path.resolve(dir), { local_files_only: true });
  const { image_processor: imageProcessor, tokenizer } = processor;
  if (imageProcessor === undefined || tokenizer === undefined) {
    throw new ModelFolderError(
      dir,
      "preprocessor_config.json",
      `processor_class ${JSON.stringify(processor.constructor.name)} has ${imageProcessor ? "no tokenizer" : "no image processor"}; expected both`,
    );
  }
  return { processor, imageProcessor, tokenizer };
}

/** The item's image checked against the limits, then decoded as RawImage.read decodes a file (EXIF-rotated). */
export async function readItemImage(
  itemId: string,
  image: unknown,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<RawImage> {
  const { bytes } = await checkImage(itemId, image, limits);
  try {
    return await RawImage.fromBlob(new Blob([new Uint8Array(bytes)]));
  } catch (err) {
    throw corruptImageError(itemId, err);
  }
}

export function floatTensor(tensor: Tensor): FloatTensor {
  return { data: tensor.data as Float32Array, dims: [...tensor.dims] };
}

export function boolTensor(tensor: Tensor): BoolTensor {
  const data = tensor.data as Uint8Array;
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), dims: [...tensor.dims] };
}

/**
 * Tokenizes an item's rendered prompts as the family's transformers.js processor does once it has
 * the image: the placeholder replaced by `imageText` (the item's expansion), then the tokenizer
 * with its special tokens.
 */
export function expandingTokenizer(
  tokenizer: LoadedProcessor["tokenizer"],
  imageToken: string,
  imageText: string,
): (prompt: string) => number[] {
  return (prompt) => tensorIds(tokenizer(prompt.replace(imageToken, () => imageText)).input_ids);
}

/** The ids of a [1, seq] int64 tensor. */
export function tensorIds(tensor: Tensor): number[] {
  return Array.from(tensor.data as BigInt64Array, Number);
}
