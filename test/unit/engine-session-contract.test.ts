import { describe, expect, it } from "vitest";
import type { ModelSpec } from "../../workers/engine/model-folder.ts";
import { checkSessionContract, type SessionSignature, type TensorSignature } from "../../workers/engine/session-contract.ts";

// ---------------------------------------------------------------------------
// Contract checks on synthetic signatures (no model needed)

const SPEC: ModelSpec = {
  modelType: "t",
  imageTokenId: 6,
  imageSeqLength: 4,
  numLayers: 2,
  crossAttentionLayers: [],
  numKvHeads: 2,
  headDim: 8,
  hiddenSize: 16,
  vocabSize: 30,
  contextLength: 64,
  eosTokenIds: [3],
  bosTokenId: 2,
};

function signatures(layers = 2, heads: number | string = 2) {
  const f = (name: string, shape: (number | string)[], type = "float32"): TensorSignature => ({ name, type, shape });
  const decoderInputs: TensorSignature[] = [
    f("inputs_embeds", ["b", "t", 16]),
    f("attention_mask", ["b", "p"], "int64"),
    f("position_ids", ["b", "t"], "int64"),
  ];
  const decoderOutputs: TensorSignature[] = [f("logits", ["b", "t", 30])];
  for (let i = 0; i < layers; i++) {
    for (const k of ["key", "value"]) {
      decoderInputs.push(f(`past_key_values.${i}.${k}`, ["b", heads, "p", 8]));
      decoderOutputs.push(f(`present.${i}.${k}`, ["b", heads, "p", 8]));
    }
  }
  return {
    vision: { inputs: [f("pixel_values", ["b", 3, 32, 32])], outputs: [f("image_features", ["b", 4, 16])] } as SessionSignature,
    embed: { inputs: [f("input_ids", ["b", "t"], "int64")], outputs: [f("inputs_embeds", ["b", "t", 16])] } as SessionSignature,
    decoder: { inputs: decoderInputs, outputs: decoderOutputs } as SessionSignature,
  };
}

describe("checkSessionContract", () => {
  it("accepts a matching set of sessions and reports what it learnt", () => {
    const c = checkSessionContract("/m", SPEC, signatures());
    expect(c).toMatchObject({ kvType: "float32", hiddenSize: 16, vocabSize: 30, imageSize: [32, 32], useCacheBranch: false });
  });

  it("names the file and the missing input, listing what was found", () => {
    const s = signatures();
    (s.decoder.inputs as TensorSignature[])[2] = { name: "position_idz", type: "int64", shape: ["b", "t"] };
    expect(() => checkSessionContract("/m", SPEC, s)).toThrow(
      "decoder_model_merged.onnx: expected input 'position_ids', found inputs_embeds, attention_mask, position_idz, past_key_values.0.key",
    );
  });

  it("checks layer count, head count, element types and outputs against config.json", () => {
    expect(() => checkSessionContract("/m", SPEC, signatures(3))).toThrow(
      /'past_key_values\.2\.key', 'past_key_values\.2\.value' beyond num_hidden_layers 2/,
    );
    expect(() => checkSessionContract("/m", SPEC, signatures(1))).toThrow(/expected input 'past_key_values\.1\.key'/);
    expect(() => checkSessionContract("/m", SPEC, signatures(2, 4))).toThrow(
      /has 4 at axis 1; expected 2 \(num_key_value_heads in config\.json\)/,
    );
    const s = signatures();
    (s.embed.inputs as TensorSignature[])[0] = { name: "input_ids", type: "int32", shape: ["b", "t"] };
    expect(() => checkSessionContract("/m", SPEC, s)).toThrow(
      /embed_tokens\.onnx: input 'input_ids' has element type int32; expected int64/,
    );
    const t = signatures();
    (t.decoder.outputs as TensorSignature[]).pop();
    expect(() => checkSessionContract("/m", SPEC, t)).toThrow(/decoder_model_merged\.onnx: expected output 'present\.1\.value'/);
    const u = signatures();
    (u.vision.outputs as TensorSignature[])[0] = { name: "image_features", type: "float32", shape: ["b", 9, 16] };
    expect(() => checkSessionContract("/m", SPEC, u)).toThrow(
      /vision_encoder\.onnx: output 'image_features' has 9 at axis 1; expected 4 \(image_seq_length/,
    );
    const v = signatures();
    (v.decoder.inputs as TensorSignature[]).push({ name: "token_type_ids", type: "int64", shape: ["b", "t"] });
    expect(() => checkSessionContract("/m", SPEC, v)).toThrow(/unexpected input 'token_type_ids'/);
  });

  it("checks a fixed vision input size against preprocessor_config.json", () => {
    expect(checkSessionContract("/m", SPEC, signatures(), { height: 32, width: 32 }).imageSize).toEqual([32, 32]);
    expect(() => checkSessionContract("/m", SPEC, signatures(), { height: 24, width: 32 })).toThrow(
      "preprocessor_config.json: size is 24x32; expected 32x32 (pixel_values of vision_encoder.onnx)",
    );
    const s = signatures();
    (s.vision.inputs as TensorSignature[])[0] = { name: "pixel_values", type: "float32", shape: ["b", 3, "h", "w"] };
    expect(checkSessionContract("/m", SPEC, s, { height: 24, width: 32 }).imageSize).toBeNull();
  });

  it("takes Qwen2-VL's patches with grid_thw and 3-row position_ids, and a declared logits_to_keep", () => {
    const s = signatures();
    s.vision = {
      inputs: [
        { name: "pixel_values", type: "float32", shape: ["patches", 96] },
        { name: "grid_thw", type: "int64", shape: ["images", 3] },
      ],
      outputs: [{ name: "image_features", type: "float32", shape: ["tokens", 16] }],
    };
    const decoder = s.decoder.inputs as TensorSignature[];
    decoder[2] = { name: "position_ids", type: "int64", shape: [3, "b", "t"] };
    decoder.push({ name: "num_logits_to_keep", type: "int64", shape: [] });
    const qwen = { vision: "patches", positions: "mrope" } as const;
    expect(checkSessionContract("/m", SPEC, s, undefined, qwen)).toMatchObject({
      positionAxes: 3,
      visionExtras: ["grid_thw"],
      logitsToKeep: "num_logits_to_keep",
      imageSize: null,
      hiddenSize: 16,
    });
    // The same sessions under the bundled layout: the first mismatch is named.
    expect(() => checkSessionContract("/m", SPEC, s)).toThrow(
      "vision_encoder.onnx: input 'pixel_values' has shape [patches, 96]; expected [batch, 3, height, width]",
    );
    decoder[2] = { name: "position_ids", type: "int64", shape: ["b", "t"] };
    expect(() => checkSessionContract("/m", SPEC, s, undefined, qwen)).toThrow(
      "decoder_model_merged.onnx: input 'position_ids' has shape [b, t]; expected [3, batch, sequence] (M-RoPE: temporal, height, width)",
    );
  });

  it("takes the patch grid as grid_thw or image_grid_thw (Qwen2.5-VL), and refuses neither or both", () => {
    const withGrid = (...names: string[]) => {
      const s = signatures();
      s.vision = {
        inputs: [
          { name: "pixel_values", type: "float32", shape: ["patches", 96] },
          ...names.map((name) => ({ name, type: "int64", shape: ["images", 3] })),
        ],
        outputs: [{ name: "image_features", type: "float32", shape: ["tokens", 16] }],
      };
      (s.decoder.inputs as TensorSignature[])[2] = { name: "position_ids", type: "int64", shape: [3, "b", "t"] };
      return s;
    };
    const qwen = { vision: "patches", positions: "mrope" } as const;
    expect(checkSessionContract("/m", SPEC, withGrid("image_grid_thw"), undefined, qwen).visionExtras).toEqual([
      "image_grid_thw",
    ]);
    expect(() => checkSessionContract("/m", SPEC, withGrid(), undefined, qwen)).toThrow(
      "vision_encoder.onnx: expected input 'grid_thw' or 'image_grid_thw' (int64 [images, 3]), found pixel_values",
    );
    expect(() => checkSessionContract("/m", SPEC, withGrid("grid_thw", "image_grid_thw"), undefined, qwen)).toThrow(
      "vision_encoder.onnx: declares inputs 'grid_thw' and 'image_grid_thw'; expected one of them, not both",
    );
  });

  it("takes Idefics3's tiles with a bool pixel_attention_mask", () => {
    const s = signatures();
    s.vision = {
      inputs: [
        { name: "pixel_values", type: "float32", shape: ["b", "tiles", 3, 32, 32] },
        { name: "pixel_attention_mask", type: "bool", shape: ["b", "tiles", 32, 32] },
      ],
      outputs: s.vision.outputs,
    };
    const tiles = { vision: "tiles", positions: "linear" } as const;
    expect(checkSessionContract("/m", SPEC, s, undefined, tiles)).toMatchObject({
      positionAxes: 1,
      visionExtras: ["pixel_attention_mask"],
      imageSize: [32, 32],
    });
    (s.vision.inputs as TensorSignature[])[1] = { name: "pixel_attention_mask", type: "int64", shape: ["b", "tiles", 32, 32] };
    expect(() => checkSessionContract("/m", SPEC, s, undefined, tiles)).toThrow(
      "vision_encoder.onnx: input 'pixel_attention_mask' has element type int64; expected bool",
    );
  });
});
