/**
 * The engine on each published-layout fixture (make_fixtures.py) against transformers.js 4.3.
 * transformers.js's `generate` is fed the engine's processor output for the same image and
 * question (Python's LLaVA count, Idefics3 resize order, Qwen rounding: processors.test.ts checks
 * those against transformers.js's own processors), so what is compared here is the model run:
 * vision encoder inputs, feature merge, position ids (M-RoPE for Qwen2-VL), KV cache, decoding.
 */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { AutoModelForImageTextToText, type PreTrainedModel, Tensor } from "@huggingface/transformers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GenerateRequest, JudgeRequest } from "../../shared/core/search/types.ts";
import { Engine } from "../../workers/engine/engine.ts";
import { ItemInputError, ModelFolderError } from "../../workers/engine/errors.ts";
import type { ItemContext } from "../../workers/engine/item.ts";
import { loadModelFolder } from "../../workers/engine/model-folder.ts";
import { loadProcessor, type ProcessedItem } from "../../workers/engine/processors/index.ts";
import { FAMILIES, type FixtureFamily, type Fixtures, makeFixtures } from "./fixtures.ts";

const QUESTION = "How many red objects?";
const NEW_TOKENS = 16;
let fixtures: Fixtures;

beforeAll(async () => {
  fixtures = await makeFixtures();
});
afterAll(() => {
  fixtures?.remove();
});

/** transformers.js's greedy continuation of the processed prompt (eos included when it comes). */
async function transformersGreedy(dir: string, processed: ProcessedItem, dtype: "fp32" | "fp16"): Promise<number[]> {
  const model: PreTrainedModel = await AutoModelForImageTextToText.from_pretrained(dir, {
    local_files_only: true,
    dtype,
    device: "cpu",
  });
  try {
    const n = processed.inputIds.length;
    const { pixelValues, pixelAttentionMask, imageGridThw } = processed;
    const inputs: Record<string, Tensor> = {
      input_ids: new Tensor("int64", BigInt64Array.from(processed.inputIds, BigInt), [1, n]),
      attention_mask: new Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]),
      pixel_values: new Tensor("float32", pixelValues.data, pixelValues.dims),
    };
    if (pixelAttentionMask !== undefined)
      inputs.pixel_attention_mask = new Tensor("bool", pixelAttentionMask.data, pixelAttentionMask.dims);
    if (imageGridThw !== undefined)
      inputs.image_grid_thw = new Tensor("int64", BigInt64Array.from(imageGridThw.flat(), BigInt), [imageGridThw.length, 3]);
    const sequences = (await model.generate({ ...inputs, max_new_tokens: NEW_TOKENS, do_sample: false })) as Tensor;
    return Array.from(sequences.data as BigInt64Array, Number).slice(n);
  } finally {
    await model.dispose();
  }
}

/** The engine's greedy continuation of the item's prompt: stops at end of sequence or NEW_TOKENS. */
async function engineGreedy(engine: Engine, ctx: ItemContext): Promise<{ tokens: number[]; eos: boolean }> {
  const [out] = await engine.internals.backend.continue(
    ctx,
    [{ ids: ctx.promptIds, stop: { kind: "end" }, maxTokens: NEW_TOKENS, sampleKey: "greedy", purpose: "generate", cache: true }],
    { ...engine.sampling, greedy: true },
  );
  return { tokens: out!.tokens, eos: out!.reason === "eos" };
}

async function processed(family: FixtureFamily, engine: Engine, image: Buffer): Promise<ProcessedItem> {
  const processor = await loadProcessor(await loadModelFolder(fixtures.dir(family)));
  return processor.process("item", image, engine.tokenizer.renderPrompt(QUESTION));
}

describe.each(FAMILIES)("the engine on the %s fixture", (family) => {
  it.each([
    ["square", "fp32"],
    ["wide", "fp32"],
    ["square", "fp16"],
  ] as const)(
    "decodes greedily as transformers.js generate does (%s image, %s files), cached and reference",
    async (image, dtype) => {
      const dir = fixtures.dir(family);
      const bytes = fixtures.images[image];
      const dtypeSetting = { all: dtype, sessions: {} };
      const cached = await Engine.load(dir, { dtype: dtypeSetting });
      const reference = await Engine.load(dir, { dtype: dtypeSetting, reference: true });
      try {
        const inputs = await processed(family, cached, bytes);
        const expected = await transformersGreedy(dir, inputs, dtype);
        expect(expected.length).toBeGreaterThan(0);
        for (const engine of [cached, reference]) {
          const ctx = await engine.openItem({ id: `${family}-${image}`, image: bytes, question: QUESTION });
          expect(ctx.promptIds).toEqual(inputs.inputIds);
          const { tokens, eos } = await engineGreedy(engine, ctx);
          // transformers.js keeps the eos token it stops on; the engine reports it as the finish reason.
          expect(eos ? [...tokens, expected.at(-1)] : tokens).toEqual(expected);
          engine.closeItem(ctx);
        }
      } finally {
        await Promise.all([cached.close(), reference.close()]);
      }
    },
  );

  it("gives two items' candidates, prefixes and judge verdicts batched what it gives them one call at a time", async () => {
    const dir = fixtures.dir(family);
    const requests = (item: string, prefix: string): GenerateRequest[] =>
      [0, 1, 2].map((c) => ({
        id: `${item}:SUMMARY:c${c}`,
        prefix,
        stop: { kind: "stage", stage: "SUMMARY" },
        maxTokens: 8,
        sampleKey: `7/${item}/SUMMARY/c${c}/${prefix.length}`,
      }));
    const judgeRequests = (item: string): JudgeRequest[] => [
      {
        id: `${item}:CAPTION:c0-vs-c1`,
        kind: "compare",
        template: "CAPTION",
        hint: "",
        first: "<CAPTION>Two red squares.</CAPTION>",
        second: "<CAPTION>One blue circle.</CAPTION>",
      },
    ];
    const sampling = { greedy: false, temperature: 1, topP: 1, topK: 0 };
    const items = (["square", "wide"] as const).map((image) => ({
      id: `${family}-${image}`,
      image: fixtures.images[image],
      question: QUESTION,
    }));
    const run = async (engine: Engine, ctx: ItemContext) => ({
      fresh: await engine.generate(ctx, requests(ctx.id, ""), sampling),
      continued: await engine.generate(ctx, requests(ctx.id, "<SUMMARY>The image"), sampling),
      verdicts: await engine.judge(ctx, judgeRequests(ctx.id), "score"),
    });

    const rows: number[] = [];
    const batched = await Engine.load(dir, { maxBatch: 16, observer: { decodeStep: (n) => rows.push(n) } });
    const alone = await Engine.load(dir, { maxBatch: 1 });
    try {
      const contexts = await Promise.all(items.map((item) => batched.openItem(item)));
      const together = await Promise.all(contexts.map((ctx) => run(batched, ctx)));
      // Both items' candidates shared decoder calls (different prompt lengths, so left padding; for Qwen2-VL different rope deltas).
      expect(Math.max(...rows)).toBeGreaterThan(3);
      for (const [i, item] of items.entries()) {
        const ctx = await alone.openItem(item);
        const single = await run(alone, ctx);
        expect(together[i]!.fresh).toEqual(single.fresh);
        expect(together[i]!.continued).toEqual(single.continued);
        expect(together[i]!.verdicts.map((v) => v.verdict)).toEqual(single.verdicts.map((v) => v.verdict));
        const score = (v: (typeof single.verdicts)[number]) => (v.detail as { score: number }).score;
        expect(score(together[i]!.verdicts[0]!)).toBeCloseTo(score(single.verdicts[0]!), 4);
      }
    } finally {
      await Promise.all([batched.close(), alone.close()]);
    }
  });

  it("builds judge prompts with the question prompt's image block", async () => {
    const engine = await Engine.load(fixtures.dir(family));
    try {
      const ctx = await engine.openItem({ id: "judge-block", image: fixtures.images.wide, question: QUESTION });
      const judgePrompt = ctx.expand(engine.tokenizer.renderPrompt(`${QUESTION} Which response is better?`));
      const imageId = engine.folder.spec.imageTokenId;
      const lastImageToken = ctx.promptIds.lastIndexOf(imageId);
      expect(judgePrompt.filter((id) => id === imageId)).toHaveLength(ctx.imageTokenCount);
      expect(judgePrompt.slice(0, lastImageToken + 1)).toEqual(ctx.promptIds.slice(0, lastImageToken + 1));
    } finally {
      await engine.close();
    }
  });
});

describe("bad published folders and images", () => {
  const copy = (family: FixtureFamily, name: string, edit: (dir: string) => void): string => {
    const dir = path.join(fixtures.root, `${family}-${name}`);
    cpSync(fixtures.dir(family), dir, { recursive: true });
    edit(dir);
    return dir;
  };
  const editJson = (dir: string, file: string, edit: (v: Record<string, unknown>) => void) => {
    const v = JSON.parse(readFileSync(path.join(dir, file), "utf8"));
    edit(v);
    writeFileSync(path.join(dir, file), JSON.stringify(v));
  };

  it("names the item when the prompt holds more image tokens than the vision encoder returns features", async () => {
    // Python's count with one extra token: 17 image tokens for the encoder's 16 rows.
    const dir = copy("llava", "extra-image-token", (d) =>
      editJson(d, "processor_config.json", (v) => (v.num_additional_image_tokens = 2)),
    );
    for (const reference of [false, true]) {
      const engine = await Engine.load(dir, { reference });
      try {
        const open = async () => {
          const ctx = await engine.openItem({ id: "miscounted", image: fixtures.images.square, question: QUESTION });
          await engineGreedy(engine, ctx);
        };
        await expect(open()).rejects.toThrow(ItemInputError);
        await expect(open()).rejects.toThrow(
          /item "miscounted": image: vision_encoder\.onnx returned image_features \[1, 16, 64\], 16 rows; the prompt holds 17 image tokens/,
        );
      } finally {
        await engine.close();
      }
    }
  });

  it("refuses a tokenizer without the image token, naming tokenizer.json", async () => {
    const dir = copy("qwen2_vl", "no-image-token", (d) =>
      editJson(d, "tokenizer.json", (v) => {
        v.added_tokens = (v.added_tokens as { content: string }[]).filter((t) => t.content !== "<|image_pad|>");
      }),
    );
    await expect(Engine.load(dir)).rejects.toThrow(ModelFolderError);
    await expect(Engine.load(dir)).rejects.toThrow(
      /^tokenizer\.json: image token "<\|image_pad\|>" has id none; expected image_token_id 364/,
    );
  });

  it("refuses sessions of another family's layout, naming the session file and the shape expected", async () => {
    const swap = (into: FixtureFamily, from: FixtureFamily, session: string) =>
      copy(into, `${session}-of-${from}`, (d) =>
        cpSync(path.join(fixtures.dir(from), "onnx", `${session}.onnx`), path.join(d, "onnx", `${session}.onnx`)),
      );
    await expect(Engine.load(swap("qwen2_vl", "idefics3", "decoder_model_merged"))).rejects.toThrow(
      /^onnx\/decoder_model_merged\.onnx: input 'position_ids' has shape \[batch_size, sequence_length\]; expected \[3, batch, sequence\]/,
    );
    await expect(Engine.load(swap("idefics3", "qwen2_vl", "decoder_model_merged"))).rejects.toThrow(
      /^onnx\/decoder_model_merged\.onnx: input 'position_ids' has shape \[3, batch_size, sequence_length\]; expected \[batch, sequence\]/,
    );
    await expect(Engine.load(swap("qwen2_vl", "llava", "vision_encoder"))).rejects.toThrow(
      /^onnx\/vision_encoder\.onnx: input 'pixel_values' has shape \[batch_size, 3, 32, 32\]; expected \[patches, /,
    );
    await expect(Engine.load(swap("llava", "idefics3", "vision_encoder"))).rejects.toThrow(
      /^onnx\/vision_encoder\.onnx: input 'pixel_values' has shape \[batch_size, num_images, 3, 32, 32\]; expected \[batch, 3, height, width\]/,
    );
  });

  it("refuses a question that holds the image placeholder, naming the item and field", async () => {
    const engine = await Engine.load(fixtures.dir("idefics3"));
    try {
      await expect(
        engine.openItem({ id: "two-images", image: fixtures.images.square, question: "What is <image>?" }),
      ).rejects.toThrow(/item "two-images": question: the rendered prompt holds the image placeholder "<image>" 2 times/);
    } finally {
      await engine.close();
    }
  });
});
