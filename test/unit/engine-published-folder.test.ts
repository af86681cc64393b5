/**
 * Model folders in the layout onnx-community publishes (session files in onnx/ with dtype
 * suffixes, other model families' JSON files), built from the bundled model's files: what is
 * resolved, and one clear error naming the file, the field and what was expected per bad folder.
 */
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_JUDGE_TEMPLATES } from "../../shared/core/prompts/judge-defaults.ts";
import { ModelFolderError } from "../../workers/engine/errors.ts";
import { loadModelFolder } from "../../workers/engine/model-folder.ts";
import { SESSION_NAMES } from "../../workers/engine/model-files.ts";
import { EngineTokenizer } from "../../workers/engine/tokenizer.ts";

const MODEL = path.resolve(import.meta.dirname, "../../models/stagebeam-tiny");
let tmp = "";
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sb-published-test-"));
});
afterAll(async () => {
  if (tmp !== "") await rm(tmp, { recursive: true, force: true });
});

type Json = Record<string, unknown>;
const readJson = async (dir: string, file: string) => JSON.parse(await readFile(path.join(dir, file), "utf8")) as Json;
const writeJson = (dir: string, file: string, value: unknown) => writeFile(path.join(dir, file), JSON.stringify(value));
const editJson = async (dir: string, file: string, edit: (v: Json) => void) => {
  const v = await readJson(dir, file);
  edit(v);
  await writeJson(dir, file, v);
};

let folders = 0;
/** The bundled model re-laid as a published export: onnx/<session>.onnx and _fp16 copies, no judge_templates.json. */
async function published(change: (dir: string) => Promise<void> = async () => undefined): Promise<string> {
  const dir = path.join(tmp, `folder${folders++}`);
  await cp(MODEL, dir, { recursive: true, dereference: true });
  await rm(path.join(dir, "judge_templates.json"));
  await mkdir(path.join(dir, "onnx"));
  for (const s of SESSION_NAMES) {
    await rename(path.join(dir, `${s}.onnx`), path.join(dir, "onnx", `${s}.onnx`));
    await cp(path.join(dir, "onnx", `${s}.onnx`), path.join(dir, "onnx", `${s}_fp16.onnx`));
  }
  await change(dir);
  return dir;
}

/** A published folder of another family: config.json's model_type and the JSON files that family reads. */
const asFamily = (modelType: string, extra: (dir: string) => Promise<void> = async () => undefined) =>
  published(async (dir) => {
    await editJson(dir, "config.json", (v) => (v.model_type = modelType));
    const pre = await readJson(dir, "preprocessor_config.json");
    const common = { image_mean: pre.image_mean, image_std: pre.image_std, rescale_factor: pre.rescale_factor };
    if (modelType.startsWith("llava"))
      await writeJson(dir, "preprocessor_config.json", { ...common, size: { shortest_edge: 128 } });
    if (modelType === "idefics3" || modelType === "smolvlm") {
      await writeJson(dir, "preprocessor_config.json", {
        ...common,
        size: { longest_edge: 256 },
        max_image_size: { longest_edge: 128 },
      });
      await writeJson(dir, "processor_config.json", { image_seq_len: 64 });
    }
    if (modelType.startsWith("qwen2")) {
      await writeJson(dir, "preprocessor_config.json", {
        ...common,
        patch_size: 14,
        merge_size: 2,
        temporal_patch_size: 2,
        min_pixels: 3136,
        max_pixels: 12845056,
      });
    }
    await extra(dir);
  });

async function loadError(p: Promise<unknown>): Promise<ModelFolderError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ModelFolderError);
    return err as ModelFolderError;
  }
  throw new Error("expected a ModelFolderError");
}

describe("session files as transformers.js resolves them", () => {
  it("reads onnx/ with the dtype's suffix, fp32 unless told", async () => {
    const dir = await published();
    const fp32 = await loadModelFolder(dir);
    expect(Object.values(fp32.sessions).map((s) => [s.file, s.dtype])).toEqual([
      ["onnx/vision_encoder.onnx", "fp32"],
      ["onnx/embed_tokens.onnx", "fp32"],
      ["onnx/decoder_model_merged.onnx", "fp32"],
    ]);
    expect(fp32.onnx.decoder).toBe(path.join(dir, "onnx/decoder_model_merged.onnx"));
    const mixed = await loadModelFolder(dir, { dtype: { all: "fp16", sessions: { vision_encoder: "fp32" } } });
    expect(Object.values(mixed.sessions).map((s) => s.file)).toEqual([
      "onnx/vision_encoder.onnx",
      "onnx/embed_tokens_fp16.onnx",
      "onnx/decoder_model_merged_fp16.onnx",
    ]);
    // Same bytes under other names: the digest covers paths too, and only the files loaded.
    expect(mixed.digest).not.toBe(fp32.digest);
    expect(mixed.files.map((f) => f.name)).not.toContain("onnx/vision_encoder_fp16.onnx");
  });

  it("takes the folder's default from config.json transformers.js_config.dtype", async () => {
    const one = await published((d) => editJson(d, "config.json", (v) => (v["transformers.js_config"] = { dtype: "fp16" })));
    expect((await loadModelFolder(one)).sessions.embed_tokens.file).toBe("onnx/embed_tokens_fp16.onnx");
    const per = await published((d) =>
      editJson(d, "config.json", (v) => (v["transformers.js_config"] = { dtype: { decoder_model_merged: "fp16" } })),
    );
    const f = await loadModelFolder(per);
    expect([f.sessions.vision_encoder.dtype, f.sessions.decoder_model_merged.dtype]).toEqual(["fp32", "fp16"]);
    // MODEL_DTYPE wins over the folder's default.
    expect(
      (await loadModelFolder(per, { dtype: { sessions: { decoder_model_merged: "fp32" } } })).sessions.decoder_model_merged.dtype,
    ).toBe("fp32");
    const bad = await published((d) => editJson(d, "config.json", (v) => (v["transformers.js_config"] = { dtype: "fp8" })));
    expect((await loadError(loadModelFolder(bad))).message).toMatch(
      /^config\.json: transformers\.js_config\.dtype: expected one of fp32, fp16, q8, int8, uint8, q4, q4f16, bnb4, got "fp8"/,
    );
  });

  it("names a missing dtype's file with the dtypes the folder has", async () => {
    const dir = await published();
    const e = await loadError(loadModelFolder(dir, { dtype: { sessions: { decoder_model_merged: "q4" } } }));
    expect(e.file).toBe("onnx/decoder_model_merged_q4.onnx");
    expect(e.message).toMatch(
      /^onnx\/decoder_model_merged_q4\.onnx: not found \(dtype q4\); the folder has dtypes fp32, fp16 for decoder_model_merged/,
    );
    const unknown = await loadError(loadModelFolder(dir, { dtype: { sessions: { decoder: "q4" } } }));
    expect(unknown.message).toMatch(
      /MODEL_DTYPE names session "decoder"; the sessions are vision_encoder, embed_tokens, decoder_model_merged/,
    );
  });

  it("names a missing session", async () => {
    const dir = await published(async (d) => {
      await rm(path.join(d, "onnx/embed_tokens.onnx"));
      await rm(path.join(d, "onnx/embed_tokens_fp16.onnx"));
    });
    expect((await loadError(loadModelFolder(dir))).message).toMatch(
      /^onnx\/embed_tokens\.onnx: not found \(dtype fp32\); the folder has no embed_tokens file \(embed_tokens<suffix>\.onnx\) in onnx\//,
    );
  });

  it("counts external data beside its file, in chunk order", async () => {
    const dir = await published(async (d) => {
      for (const name of [
        "decoder_model_merged.onnx_data_1",
        "decoder_model_merged.onnx_data",
        "decoder_model_merged_fp16.onnx_data",
      ])
        await writeFile(path.join(d, "onnx", name), "x");
    });
    const f = await loadModelFolder(dir);
    expect(f.sessions.decoder_model_merged.externalData).toEqual([
      "onnx/decoder_model_merged.onnx_data",
      "onnx/decoder_model_merged.onnx_data_1",
    ]);
    expect(f.files.map((x) => x.name)).toContain("onnx/decoder_model_merged.onnx_data_1");
    expect(f.files.map((x) => x.name)).not.toContain("onnx/decoder_model_merged_fp16.onnx_data");
  });
});

describe("model families", () => {
  it("recognises the published families and where their image-token count comes from", async () => {
    const llava = await loadModelFolder(await asFamily("llava"));
    expect([llava.family.name, llava.spec.imageSeqLength, llava.preprocessor]).toEqual(["llava", 64, null]);
    expect(llava.configs.preprocessor.size).toEqual({ shortest_edge: 128 });
    const idefics = await loadModelFolder(
      await asFamily("idefics3", (d) => editJson(d, "config.json", (v) => delete v.image_seq_length)),
    );
    expect([idefics.family.name, idefics.spec.imageSeqLength, idefics.configs.processor]).toEqual([
      "idefics3",
      64,
      { image_seq_len: 64 },
    ]);
    const qwen = await loadModelFolder(
      await asFamily("qwen2_vl", (d) => editJson(d, "config.json", (v) => delete v.image_seq_length)),
    );
    expect([qwen.family.name, qwen.spec.imageSeqLength]).toEqual(["qwen2_vl", null]);
    expect((await loadModelFolder(await asFamily("smolvlm"))).family.name).toBe("smolvlm");
  });

  it("refuses an unknown or unsupported family with the reason", async () => {
    const florence = await loadError(loadModelFolder(await asFamily("florence2")));
    expect(florence.message).toMatch(/^config\.json: model_type: not supported: florence2 \(an encoder-decoder model/);
    const onevision = await loadError(loadModelFolder(await asFamily("llava_onevision")));
    expect(onevision.message).toMatch(
      /not supported: llava_onevision \(LLaVA-OneVision's anyres tiling .* is not implemented here/,
    );
    const other = await loadError(loadModelFolder(await asFamily("blip_2")));
    expect(other.message).toMatch(
      /not supported: blip_2 \(a model type this engine does not know\); expected one of stagebeam-tiny, llava/,
    );
  });

  it("names mllama's missing cross-attention layers", async () => {
    const mllama = await loadError(loadModelFolder(await asFamily("mllama")));
    expect(mllama.message).toMatch(
      /^config\.json: text_config\.cross_attention_layers: missing; expected the decoder layers that cross-attend to the image/,
    );
  });

  it("names a missing image-token count", async () => {
    const llava = await asFamily("llava", (d) => editJson(d, "config.json", (v) => delete v.image_seq_length));
    expect((await loadError(loadModelFolder(llava))).message).toMatch(
      /^config\.json: image_seq_length: missing; expected an integer >= 1 \(image tokens per image for llava\)/,
    );
    const idefics = await asFamily("idefics3", (d) => writeJson(d, "processor_config.json", {}));
    expect((await loadError(loadModelFolder(idefics))).message).toMatch(
      /^processor_config\.json: image_seq_len: missing; expected an integer >= 1 \(image tokens per tile for idefics3\)/,
    );
  });

  it("names a preprocessor field out of range", async () => {
    const qwen = await asFamily("qwen2_vl", (d) => editJson(d, "preprocessor_config.json", (v) => (v.min_pixels = 2 ** 25)));
    expect((await loadError(loadModelFolder(qwen))).message).toMatch(
      /^preprocessor_config\.json: max_pixels: expected max_pixels >= min_pixels/,
    );
    const idefics = await asFamily("idefics3", (d) =>
      editJson(d, "preprocessor_config.json", (v) => (v.max_image_size = { longest_edge: 0 })),
    );
    expect((await loadError(loadModelFolder(idefics))).message).toMatch(
      /^preprocessor_config\.json: max_image_size\.longest_edge: expected an integer >= 1, got 0/,
    );
    const llava = await asFamily("llava", (d) => editJson(d, "preprocessor_config.json", (v) => (v.size = { longest_edge: 9 })));
    expect((await loadError(loadModelFolder(llava))).message).toMatch(
      /^preprocessor_config\.json: size: expected \{ shortest_edge \} or \{ height, width \} in pixels/,
    );
  });

  it("names a tokenizer without the image token", async () => {
    const dir = await asFamily("qwen2_vl", async (d) => {
      await editJson(d, "tokenizer_config.json", (v) => delete v.image_token);
    });
    const folder = await loadModelFolder(dir);
    expect(folder.tokenizer.imageToken).toBe("<|image_pad|>");
    expect(() => new EngineTokenizer(folder)).toThrow(
      /^tokenizer\.json: image token "<\|image_pad\|>" has id none; expected image_token_id 6 from config\.json/,
    );
  });
});

describe("what the JSON files say", () => {
  it("prefers chat_template.jinja, then chat_template.json, then tokenizer_config.json", async () => {
    const dir = await published();
    expect((await loadModelFolder(dir)).tokenizer.chatTemplateSource).toBe("tokenizer_config.json");
    await writeJson(dir, "chat_template.json", { chat_template: "{{ 'json' }}" });
    const json = await loadModelFolder(dir);
    expect([json.tokenizer.chatTemplateSource, json.tokenizer.chatTemplate]).toEqual(["chat_template.json", "{{ 'json' }}"]);
    expect(json.files.map((f) => f.name)).toContain("chat_template.json");
    await writeFile(path.join(dir, "chat_template.jinja"), "{{ 'jinja' }}");
    expect((await loadModelFolder(dir)).tokenizer.chatTemplate).toBe("{{ 'jinja' }}");
  });

  it("takes the eos list of generation_config.json over config.json", async () => {
    const dir = await published(async (d) => {
      await editJson(d, "generation_config.json", (v) => (v.eos_token_id = [3, 1]));
      await editJson(d, "config.json", (v) => (v.eos_token_id = 1));
    });
    expect((await loadModelFolder(dir)).spec.eosTokenIds).toEqual([3, 1]);
  });

  it("uses the paper's judge prompts when the folder has none", async () => {
    const f = await loadModelFolder(await published());
    expect(f.judgeTemplatesSource).toBe("default");
    expect(f.judgeTemplates).toBe(DEFAULT_JUDGE_TEMPLATES);
    expect(f.judgeTemplates.compare.CAPTION).toMatch(/^Now you act as a judge/);
  });

  it("puts the BOS that the tokenizer's post-processor adds in front of a prompt once", async () => {
    const addsBos = {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<bos>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<bos>": { id: "<bos>", ids: [2], tokens: ["<bos>"] } },
    };
    const dir = await published((d) => editJson(d, "tokenizer.json", (v) => (v.post_processor = addsBos)));
    const withTemplateBos = new EngineTokenizer(await loadModelFolder(dir));
    expect(withTemplateBos.addedBos).toBe(2);
    const ids = withTemplateBos.promptIds("How many?");
    expect(ids.filter((t) => t === 2)).toHaveLength(1);
    expect(ids[0]).toBe(2);
    await editJson(
      dir,
      "tokenizer_config.json",
      (v) => (v.chat_template = (v.chat_template as string).replace("{{ bos_token }}", "")),
    );
    const withoutTemplateBos = new EngineTokenizer(await loadModelFolder(dir));
    expect(withoutTemplateBos.promptIds("How many?")).toEqual(ids);
    // The bundled tokenizer adds nothing.
    expect(new EngineTokenizer(await loadModelFolder(MODEL)).addedBos).toBeNull();
  });
});
