/**
 * The committed model reproduces, in onnxruntime-node, what PyTorch computed at export time
 * (golden/golden.json): the preprocessed pixels bit for bit, the prompt's token ids, and the
 * first step's top-5 logits within 1e-3.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { Engine } from "../../workers/engine/index.ts";
import { preprocessImage } from "../../workers/engine/image.ts";

const MODEL = path.resolve(import.meta.dirname, "../../models/stagebeam-tiny");

interface Golden {
  question: string;
  ids: number[];
  pixel_values_shape: number[];
  pixel_values_sha256: string;
  top5_ids: number[];
  top5_logits: number[];
}

describe("the bundled model against its golden file", () => {
  it("reproduces the pixels, the prompt and the first-step logits of PyTorch", async () => {
    const golden = JSON.parse(await readFile(path.join(MODEL, "golden/golden.json"), "utf8")) as Golden;
    const engine = await Engine.load(MODEL);
    const pixels = await preprocessImage(
      "golden",
      await readFile(path.join(MODEL, "golden/image.png")),
      engine.folder.preprocessor!,
    );
    expect(
      createHash("sha256")
        .update(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength))
        .digest("hex"),
    ).toBe(golden.pixel_values_sha256);
    expect(engine.tokenizer.promptIds(golden.question)).toEqual(golden.ids);
    const config = engine.folder.spec;
    await engine.close();

    // Plain onnxruntime-node, the contract's three sessions, no engine code in between.
    const [vision, embed, decoder] = await Promise.all(
      ["vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx"].map((f) =>
        ort.InferenceSession.create(path.join(MODEL, f)),
      ),
    );
    const { image_features: features } = await vision!.run({
      pixel_values: new ort.Tensor("float32", pixels, golden.pixel_values_shape),
    });
    const T = golden.ids.length;
    const { inputs_embeds: embeds } = await embed!.run({
      input_ids: new ort.Tensor("int64", BigInt64Array.from(golden.ids.map(BigInt)), [1, T]),
    });
    const D = embeds!.dims[2]!;
    const merged = Float32Array.from(embeds!.data as Float32Array);
    const feats = features!.data as Float32Array;
    let k = 0;
    golden.ids.forEach((id, t) => {
      if (id === config.imageTokenId) merged.set(feats.subarray(k++ * D, k * D), t * D);
    });
    expect(k).toBe(features!.dims[1]);
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor("float32", merged, [1, T, D]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(T).fill(1n), [1, T]),
      position_ids: new ort.Tensor(
        "int64",
        BigInt64Array.from({ length: T }, (_, i) => BigInt(i)),
        [1, T],
      ),
    };
    for (let layer = 0; layer < config.numLayers; layer++) {
      for (const kind of ["key", "value"]) {
        feeds[`past_key_values.${layer}.${kind}`] = new ort.Tensor("float32", new Float32Array(0), [
          1,
          config.numKvHeads,
          0,
          config.headDim,
        ]);
      }
    }
    const { logits } = await decoder!.run(feeds);
    const V = logits!.dims[2]!;
    const last = Array.from((logits!.data as Float32Array).subarray((T - 1) * V, T * V));
    const top5 = last
      .map((value, id) => ({ id, value }))
      .sort((a, b) => b.value - a.value)
      .slice(0, 5);
    expect(top5.map((x) => x.id)).toEqual(golden.top5_ids);
    top5.forEach((x, i) => {
      expect(Math.abs(x.value - golden.top5_logits[i]!)).toBeLessThan(1e-3);
    });
  });
});
