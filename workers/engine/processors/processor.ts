/**
 * The per-family processor contract: an item's image and its rendered prompt in, the tensors the
 * vision encoder and the decoder's first step need out, and how the item's other prompts (judge
 * prompts) are expanded and all its sequences positioned. One implementation per model family
 * (index.ts chooses by config.json `model_type`).
 */
import type { PositionRule } from "../positions.ts";

export interface FloatTensor {
  data: Float32Array;
  dims: number[];
}

export interface BoolTensor {
  /** 1 = true, 0 = false (ONNX bool tensors are one byte an element). */
  data: Uint8Array;
  dims: number[];
}

/** Qwen2-VL's multimodal rotary positions for a prompt, and what decoding carries on with. */
export interface MropePrompt {
  /** Rows t, h, w; one position per prompt token. */
  positions: [number[], number[], number[]];
  /** Added to the cache length to give a decode step's position on all three rows. */
  ropeDelta: number;
}

export interface ProcessedPrompt {
  /** The prompt's token ids with the image placeholder expanded to one id per image feature. */
  inputIds: number[];
  imageTokenId: number;
  /** How many of `inputIds` are `imageTokenId`: the rows the vision encoder must return. */
  imageTokenCount: number;
  pixelValues: FloatTensor;
  /** Idefics3 / SmolVLM: which pixels of each tile are real, [1, tiles, T, T]. */
  pixelAttentionMask?: BoolTensor;
  /** Qwen2-VL, Qwen2.5-VL: [t, h, w] in patches per image (the vision encoder's `grid_thw` or `image_grid_thw`). */
  imageGridThw?: [number, number, number][];
  /** Qwen2-VL: M-RoPE positions of the prompt. */
  mrope?: MropePrompt;
  /** mllama: the tile arrangement of the image (pixelValues are [1, max tiles, 3, tile, tile]). */
  crossImage?: CrossImage;
}

/** mllama's image besides its pixels: which canvas it was fitted to and which tiles are real. */
export interface CrossImage {
  /** Index + 1 of [rows, cols] among the supported arrangements. */
  aspectRatioId: number;
  /** One entry per tile slot: 1 for a real tile, 0 for padding. */
  aspectRatioMask: number[];
  /** Real tiles (the leading 1s of aspectRatioMask); the cross-attention mask lets tokens see these. */
  tiles: number;
}

/** What the vision encoder is fed for one item. */
export type VisionInput = Pick<ProcessedPrompt, "pixelValues" | "pixelAttentionMask" | "imageGridThw" | "crossImage">;

/** A processed item: its prompt and image, and what every other sequence of the item is built with. */
export interface ProcessedItem extends ProcessedPrompt {
  /**
   * Another rendered prompt of the same item (a judge prompt), tokenized with the image
   * placeholder expanded exactly as in `inputIds` (the image is not processed again). A prompt
   * holding the placeholder other than once gets another image-token count, which the caller checks.
   */
  expand(prompt: string): number[];
  positions: PositionRule;
}

export interface Processor {
  readonly modelType: string;
  /** The text the rendered prompt holds once where the image goes (what the processor expands). */
  readonly imageToken: string;
  /**
   * Decodes and preprocesses the image and tokenizes `prompt` with the image expanded. Throws an
   * ItemInputError naming the item when the image is unusable or the prompt does not hold
   * `imageToken` exactly once.
   */
  process(itemId: string, image: unknown, prompt: string): Promise<ProcessedItem>;
}
