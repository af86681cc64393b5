/**
 * What transformers.js makes of a fixture folder: processor outputs and a greedy `generate`, printed as JSON.
 *
 *   npx tsx test/conformance/tfjs-reference.ts FIXTURE_DIR IMAGE "QUESTION" [--dtype fp32|fp16] [--max-new-tokens 16]
 *
 * Processor and model outputs are typed loosely here: they are keyed by family.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import * as tf from "@huggingface/transformers";

// biome-ignore lint/suspicious/noExplicitAny: processor and model outputs differ by family.
type Any = any;

interface Args {
  fixture: string;
  image: string;
  question: string;
  dtype: string;
  maxNewTokens: number;
}

function readArgs(): Args {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { dtype: { type: "string", default: "fp32" }, "max-new-tokens": { type: "string", default: "16" } },
  });
  const [fixture, image, question] = positionals;
  if (!fixture || !image || !question) {
    throw new Error("usage: tfjs-reference.ts FIXTURE_DIR IMAGE QUESTION [--dtype fp32|fp16] [--max-new-tokens N]");
  }
  return {
    fixture: path.resolve(fixture),
    image: path.resolve(image),
    question,
    dtype: values.dtype,
    maxNewTokens: Number(values["max-new-tokens"]),
  };
}

function describeTensor(tensor: Any) {
  const data = tensor.data as ArrayLike<number | bigint | boolean>;
  const numbers = Array.from(data, Number);
  const view = data as Uint8Array;
  const bytes = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  return {
    dims: tensor.dims,
    type: tensor.type,
    sum: numbers.reduce((a, b) => a + b, 0),
    first: numbers.slice(0, 8),
    sha256: createHash("sha256").update(bytes).digest("hex"),
  };
}

function ids(tensor: Any): number[] {
  return Array.from(tensor.data as BigInt64Array, Number);
}

/** The count Python's LlavaProcessor emits: patches + num_additional_image_tokens, minus the CLS row under "default". */
function pythonLlavaImageTokens(config: Any, pixelValues: Any): number {
  const [height, width] = pixelValues.dims.slice(-2);
  const base =
    Math.floor(height / config.patch_size) * Math.floor(width / config.patch_size) + (config.num_additional_image_tokens ?? 0);
  return config.vision_feature_select_strategy === "default" ? base - 1 : base;
}

async function runProcessor(processor: Any, modelType: string, prompt: string, image: Any): Promise<Any> {
  // LlavaProcessor takes (images, text); Idefics3Processor and Qwen2VLProcessor take (text, images).
  return modelType === "llava" ? processor(image, prompt) : processor(prompt, image);
}

/** Greedy decode with the KV cache, then one uncached forward over prompt + answer: its argmax must replay the answer. */
async function generate(model: Any, tokenizer: Any, inputs: Any, maxNewTokens: number) {
  try {
    const sequences = await model.generate({ ...inputs, max_new_tokens: maxNewTokens, do_sample: false });
    const all = ids(sequences);
    const promptLength: number = inputs.input_ids.dims[1];
    const newTokens = all.slice(promptLength);
    const { logits } = await model({
      ...inputs,
      input_ids: sequences,
      attention_mask: tf.ones([1, all.length]),
    });
    const [, length, vocab] = logits.dims;
    const data = logits.data as Float32Array;
    const replay: number[] = [];
    for (let t = promptLength - 1; t < length - 1; t++) {
      const row = data.subarray(t * vocab, (t + 1) * vocab);
      replay.push(row.indexOf(Math.max(...row)));
    }
    return {
      new_tokens: newTokens,
      text: tokenizer.decode(newTokens),
      uncached_forward_matches: replay.every((id, i) => id === newTokens[i]),
    };
  } catch (error) {
    return { error: String((error as Error).message ?? error) };
  }
}

async function main() {
  const args = readArgs();
  tf.env.allowRemoteModels = false;
  tf.env.allowLocalModels = true;
  tf.env.useFSCache = false;
  const options = { local_files_only: true };
  const config = JSON.parse(readFileSync(path.join(args.fixture, "config.json"), "utf8"));
  const processor: Any = await tf.AutoProcessor.from_pretrained(args.fixture, options);
  const model = await tf.AutoModelForImageTextToText.from_pretrained(args.fixture, {
    ...options,
    dtype: args.dtype as tf.DataType,
    device: "cpu",
  });
  const image = await tf.RawImage.read(args.image);
  const messages = [{ role: "user", content: [{ type: "image" }, { type: "text", text: args.question }] }];
  const prompt: string = processor.apply_chat_template(messages, { add_generation_prompt: true });
  const inputs = await runProcessor(processor, config.model_type, prompt, image);
  const imageTokenId: number = config.image_token_index ?? config.image_token_id;
  const inputIds = ids(inputs.input_ids);

  const report: Any = {
    library: tf.env.version,
    fixture: args.fixture,
    model_type: config.model_type,
    dtype: args.dtype as tf.DataType,
    image: { path: args.image, width: image.width, height: image.height },
    prompt,
    processor: {
      input_ids: inputIds,
      text: processor.tokenizer.decode(inputIds),
      length: inputIds.length,
      image_token_count: inputIds.filter((id) => id === imageTokenId).length,
      attention_mask_sum: ids(inputs.attention_mask).reduce((a, b) => a + b, 0),
      pixel_values: describeTensor(inputs.pixel_values),
      ...(inputs.pixel_attention_mask && { pixel_attention_mask: describeTensor(inputs.pixel_attention_mask) }),
      ...(inputs.image_grid_thw && { image_grid_thw: ids(inputs.image_grid_thw) }),
      ...(inputs.rows && { rows: inputs.rows, cols: inputs.cols }),
    },
    generate: await generate(model, processor.tokenizer, inputs, args.maxNewTokens),
  };

  if (config.model_type === "llava") {
    // transformers.js 4.3 leaves out Python's "default"-strategy CLS subtraction; redo the expansion the Python way.
    const expected = pythonLlavaImageTokens(processor.config, inputs.pixel_values);
    if (expected !== report.processor.image_token_count) {
      const token: string = processor.config.image_token;
      const text = prompt.replace(token, token.repeat(expected));
      const fixed = { ...processor.tokenizer(text), pixel_values: inputs.pixel_values };
      report.python_rule = {
        image_token_count: expected,
        input_ids: ids(fixed.input_ids),
        generate: await generate(model, processor.tokenizer, fixed, args.maxNewTokens),
      };
    }
  }
  console.log(JSON.stringify(report, null, 1));
}

await main();
