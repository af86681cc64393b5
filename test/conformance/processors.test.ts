/**
 * Each family's processor against transformers.js 4.3's own on the generated fixture folders
 * (make_fixtures.py): equal where no fix applies; where one does (FIXTURES.md, "what differs"),
 * both the transformers.js value and the Python rule ours follows are asserted.
 */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  AutoProcessor,
  Qwen2_5_VLForConditionalGeneration,
  Qwen2VLForConditionalGeneration,
  RawImage,
  Tensor,
} from "@huggingface/transformers";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mropeBatchPositions, mropeDecodePositions, mropePromptPositions } from "../../workers/engine/positions.ts";
import { loadModelFolder } from "../../workers/engine/model-folder.ts";
import { loadProcessor, type ProcessedPrompt } from "../../workers/engine/processors/index.ts";
import { llavaImageTokenCount } from "../../workers/engine/processors/llava.ts";
import { type Fixtures, makeFixtures } from "./fixtures.ts";

// biome-ignore lint/suspicious/noExplicitAny: transformers.js processor outputs are keyed by family.
type Any = any;

const QUESTION = "How many red objects?";
let fixtures: string;
const images: Record<"square" | "wide", Buffer> = { square: Buffer.alloc(0), wide: Buffer.alloc(0) };
let made: Fixtures | undefined;

beforeAll(async () => {
  made = await makeFixtures();
  fixtures = made.root;
  Object.assign(images, made.images);
});

afterAll(() => {
  made?.remove();
});

async function reference(dir: string): Promise<Any> {
  return AutoProcessor.from_pretrained(dir, { local_files_only: true });
}

function renderPrompt(processor: Any): string {
  const messages = [{ role: "user", content: [{ type: "image" }, { type: "text", text: QUESTION }] }];
  return processor.apply_chat_template(messages, { add_generation_prompt: true });
}

/** transformers.js's processor output for one image, called the way each family's processor takes its arguments. */
async function referenceOutput(processor: Any, modelType: string, bytes: Buffer, prompt: string): Promise<Any> {
  const image = await RawImage.fromBlob(new Blob([new Uint8Array(bytes)]));
  return modelType === "llava" ? processor(image, prompt) : processor(prompt, image);
}

const ids = (tensor: Any): number[] => Array.from(tensor.data as BigInt64Array, Number);
const floats = (data: ArrayLike<number>): number[] => Array.from(data);

function withoutOne(list: number[], id: number): number[] {
  const i = list.indexOf(id);
  return [...list.slice(0, i), ...list.slice(i + 1)];
}

describe.each(["square", "wide"] as const)("llava, %s image", (name) => {
  it("takes transformers.js's pixel values and tokenizer, with one image token fewer (Python's count)", async () => {
    const dir = path.join(fixtures, "llava");
    const ref = await reference(dir);
    const prompt = renderPrompt(ref);
    const expected = await referenceOutput(ref, "llava", images[name], prompt);
    const ours: ProcessedPrompt = await (await loadProcessor(await loadModelFolder(dir))).process("item", images[name], prompt);

    expect(ours.pixelValues.dims).toEqual(expected.pixel_values.dims);
    expect(floats(ours.pixelValues.data)).toEqual(floats(expected.pixel_values.data));
    const imageTokenId = 450;
    const jsIds = ids(expected.input_ids);
    // transformers.js: (32/8)² + num_additional_image_tokens 1 = 17 tokens for 16 features;
    // Python's LlavaProcessor subtracts the CLS row under the "default" strategy: 16.
    expect(jsIds.filter((t) => t === imageTokenId)).toHaveLength(17);
    expect(ours.imageTokenCount).toBe(16);
    expect(ours.inputIds).toEqual(withoutOne(jsIds, imageTokenId));
  });
});

describe.each(["square", "wide"] as const)("idefics3, %s image", (name) => {
  it("expands and tokenizes as transformers.js does; its pixels follow Python's resize-then-normalise order", async () => {
    const dir = path.join(fixtures, "idefics3");
    const ref = await reference(dir);
    const prompt = renderPrompt(ref);
    const expected = await referenceOutput(ref, "idefics3", images[name], prompt);
    const ours = await (await loadProcessor(await loadModelFolder(dir))).process("item", images[name], prompt);

    expect(ours.inputIds).toEqual(ids(expected.input_ids));
    expect(ours.imageTokenCount).toBe(name === "square" ? 40 : 28);
    expect(ours.pixelValues.dims).toEqual(expected.pixel_values.dims);
    expect(ours.pixelAttentionMask?.dims).toEqual(expected.pixel_attention_mask.dims);
    expect(Array.from(ours.pixelAttentionMask!.data)).toEqual(Array.from(expected.pixel_attention_mask.data as Uint8Array));
    // transformers.js normalises first and resizes the float tensor bilinearly: the pixels differ.
    expect(floats(ours.pixelValues.data)).not.toEqual(floats(expected.pixel_values.data));

    // Python: longest edge 96 (200×120 → 96×58 with the even bump; transformers.js 96×57), Lanczos on
    // 8-bit pixels, the encoder multiple (96×96 or 64×96), tiles cut from it, then normalised.
    const longest = name === "square" ? { w: 96, h: 96 } : { w: 96, h: 58 };
    expect(expected.reshaped_input_sizes[0]).toEqual(name === "square" ? [96, 96] : [57, 96]);
    const grid = name === "square" ? { w: 96, h: 96 } : { w: 96, h: 64 };
    const resized = await sharp(images[name])
      .removeAlpha()
      .resize(longest.w, longest.h, { fit: "fill", kernel: "lanczos3" })
      .raw()
      .toBuffer();
    const encoderSize = await sharp(resized, { raw: { width: longest.w, height: longest.h, channels: 3 } })
      .resize(grid.w, grid.h, { fit: "fill", kernel: "lanczos3" })
      .raw()
      .toBuffer();
    const firstTile = new Float32Array(3 * 32 * 32);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          const scaled = Math.fround(encoderSize[(y * grid.w + x) * 3 + c]! / 255);
          firstTile[c * 1024 + y * 32 + x] = Math.fround(Math.fround(scaled - 0.5) / 0.5);
        }
      }
    }
    expect(floats(ours.pixelValues.data.subarray(0, 3 * 32 * 32))).toEqual(floats(firstTile));
  });
});

describe("idefics3, transparent image", () => {
  it("composites alpha on white as Python's convert_to_rgb does; transformers.js drops the alpha", async () => {
    const dir = path.join(fixtures, "idefics3");
    const ref = await reference(dir);
    const prompt = renderPrompt(ref);
    const clear = await sharp({ create: { width: 32, height: 32, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    const expected = await referenceOutput(ref, "idefics3", clear, prompt);
    const ours = await (await loadProcessor(await loadModelFolder(dir))).process("item", clear, prompt);
    expect(new Set(floats(ours.pixelValues.data))).toEqual(new Set([1]));
    expect(Math.min(...floats(expected.pixel_values.data))).toBe(-1);
  });
});

/** transformers.js's model class per Qwen family fixture: get_rope_index is read off its prototype. */
const QWEN_MODELS = { qwen2_vl: Qwen2VLForConditionalGeneration, qwen2_5_vl: Qwen2_5_VLForConditionalGeneration } as const;
type QwenFamily = keyof typeof QWEN_MODELS;
const QWEN_CASES = (Object.keys(QWEN_MODELS) as QwenFamily[]).flatMap((family) =>
  (["square", "wide"] as const).map((image) => [family, image] as const),
);

async function qwenReferenceRope(family: QwenFamily, config: Any, inputIds: number[][], mask: number[][], grids: number[][]) {
  const model = Object.create(QWEN_MODELS[family].prototype);
  model.config = config;
  const tensor = (rows: number[][]) =>
    new Tensor("int64", BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0]!.length]);
  const [positions, deltas] = model.get_rope_index(tensor(inputIds), grids.length > 0 ? tensor(grids) : null, null, tensor(mask));
  return { positions: positions.tolist().map((axis: bigint[][]) => axis.map((row) => row.map(Number))), deltas: ids(deltas) };
}

describe.each(QWEN_CASES)("%s, %s image", (family, name) => {
  it("equals transformers.js's processor, and its M-RoPE positions equal get_rope_index's", async () => {
    const dir = path.join(fixtures, family);
    const ref = await reference(dir);
    const prompt = renderPrompt(ref);
    const expected = await referenceOutput(ref, family, images[name], prompt);
    const processor = await loadProcessor(await loadModelFolder(dir));
    expect(processor.modelType).toBe(family);
    const ours = await processor.process("item", images[name], prompt);

    expect(ours.inputIds).toEqual(ids(expected.input_ids));
    expect(ours.imageGridThw).toEqual([ids(expected.image_grid_thw)]);
    expect(ours.imageGridThw).toEqual([name === "square" ? [1, 8, 8] : [1, 6, 10]]);
    expect(ours.pixelValues.dims).toEqual(expected.pixel_values.dims);
    expect(floats(ours.pixelValues.data)).toEqual(floats(expected.pixel_values.data));

    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
    const rope = await qwenReferenceRope(
      family,
      config,
      [ours.inputIds],
      [ours.inputIds.map(() => 1)],
      ours.imageGridThw!.map((g) => [...g]),
    );
    expect(ours.mrope!.positions).toEqual(rope.positions.map((axis: number[][]) => axis[0]));
    expect([ours.mrope!.ropeDelta]).toEqual(rope.deltas);
  });
});

describe("qwen2_vl, rules where transformers.js differs from Python", () => {
  it("rounds smart_resize halves to even (36×20 at factor 8: Python 16×32, transformers.js 24×40)", async () => {
    const dir = path.join(fixtures, "qwen2_vl");
    const ref = await reference(dir);
    const prompt = renderPrompt(ref);
    const small = await sharp(images.square).resize(36, 20, { fit: "fill" }).png().toBuffer();
    const expected = await referenceOutput(ref, "qwen2_vl", small, prompt);
    const ours = await (await loadProcessor(await loadModelFolder(dir))).process("item", small, prompt);
    expect(ids(expected.image_grid_thw)).toEqual([1, 6, 10]);
    expect(ours.imageGridThw).toEqual([[1, 4, 8]]);
    expect(ours.imageTokenCount).toBe(8);
    expect(ours.pixelValues.dims).toEqual([32, 3 * 2 * 4 * 4]);
  });

  it("resizes and normalises with Qwen's published preprocessor_config.json, which has no size or do_normalize", async () => {
    const full = path.join(fixtures, "qwen2_vl");
    const published = path.join(fixtures, "qwen2_vl-published-preprocessor");
    cpSync(full, published, { recursive: true });
    const config = JSON.parse(readFileSync(path.join(full, "preprocessor_config.json"), "utf8"));
    const keep = ["min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std"];
    const stripped = Object.fromEntries(
      Object.entries(config).filter(([key]) => keep.includes(key) || key.endsWith("_type") || key.endsWith("_class")),
    );
    writeFileSync(path.join(published, "preprocessor_config.json"), JSON.stringify(stripped));

    const ref = await reference(full);
    const prompt = renderPrompt(ref);
    const expected = await referenceOutput(ref, "qwen2_vl", images.square, prompt);
    const jsPublished = await referenceOutput(await reference(published), "qwen2_vl", images.square, prompt);
    const ours = await (await loadProcessor(await loadModelFolder(published))).process("item", images.square, prompt);

    // transformers.js: no resize (128×128 → a 32×32 patch grid) and no normalisation (values stay in [0, 1]).
    expect(ids(jsPublished.image_grid_thw)).toEqual([1, 32, 32]);
    expect(Math.min(...floats(jsPublished.pixel_values.data))).toBeGreaterThanOrEqual(0);
    // Python's defaults (resize, bicubic, normalise) give what the complete file gives.
    expect(ours.imageGridThw).toEqual([[1, 8, 8]]);
    expect(floats(ours.pixelValues.data)).toEqual(floats(expected.pixel_values.data));
  });

  it("carries a left-padded batch's positions and rope deltas as get_rope_index does", async () => {
    const dir = path.join(fixtures, "qwen2_vl");
    const processor = await loadProcessor(await loadModelFolder(dir));
    const prompt = renderPrompt(await reference(dir));
    const square = await processor.process("a", images.square, prompt);
    const wide = await processor.process("b", images.wide, prompt);
    const width = Math.max(square.inputIds.length, wide.inputIds.length);
    const pad = (p: ProcessedPrompt) => [...Array(width - p.inputIds.length).fill(0), ...p.inputIds];
    const maskOf = (p: ProcessedPrompt) => [...Array(width - p.inputIds.length).fill(0), ...p.inputIds.map(() => 1)];
    const batch = [square, wide];
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
    const tokens = { imageTokenId: 364, visionStartTokenId: 361, spatialMergeSize: 2 };
    const ours = mropeBatchPositions(
      batch.map(pad),
      batch.map(maskOf),
      [[square.imageGridThw![0]!], [wide.imageGridThw![0]!]],
      tokens,
    );
    const rope = await qwenReferenceRope(
      "qwen2_vl",
      config,
      batch.map(pad),
      batch.map(maskOf),
      batch.map((p) => [...p.imageGridThw![0]!]),
    );
    // Padded slots: Python leaves 1 (torch.ones), transformers.js 0; they are masked out either way.
    const real = (axes: number[][][]) =>
      axes.map((axis) => axis.map((row, b) => row.filter((_, j) => maskOf(batch[b]!)[j] === 1)));
    expect(real(ours.positions)).toEqual(real(rope.positions));
    expect(ours.ropeDeltas).toEqual(rope.deltas);
    expect(ours.positions[0]![1]!.slice(0, width - wide.inputIds.length)).toEqual(Array(width - wide.inputIds.length).fill(1));
    // Decode step: transformers.js's prepare_inputs_for_generation uses past_length + rope_delta on all three rows.
    expect(mropeDecodePositions(width, ours.ropeDeltas)).toEqual([0, 1, 2].map(() => rope.deltas.map((d) => [width + d])));
  });

  it("gives a text-only prompt Python's rope delta (max + 1 - length); transformers.js adds the length", async () => {
    const config = JSON.parse(readFileSync(path.join(fixtures, "qwen2_vl", "config.json"), "utf8"));
    const prompt = [353, 82, 88, 301, 68];
    const ours = mropePromptPositions(prompt, [], { imageTokenId: 364, visionStartTokenId: 361, spatialMergeSize: 2 });
    const rope = await qwenReferenceRope("qwen2_vl", config, [prompt], [prompt.map(() => 1)], []);
    expect(ours.positions).toEqual(rope.positions.map((axis: number[][]) => axis[0]));
    expect(ours.ropeDelta).toBe(0);
    expect(rope.deltas).toEqual([2 * prompt.length]);
  });
});

describe("llavaImageTokenCount", () => {
  it("keeps the CLS row under the full strategy, and counts it when processor_config.json omits it", () => {
    const rule = { patchSize: 14, numAdditionalImageTokens: 1, visionFeatureSelectStrategy: "default" };
    expect(llavaImageTokenCount(336, 336, rule)).toBe(576);
    expect(llavaImageTokenCount(336, 336, { ...rule, visionFeatureSelectStrategy: "full" })).toBe(577);
    expect(llavaImageTokenCount(336, 336, { ...rule, numAdditionalImageTokens: undefined })).toBe(576);
  });
});
