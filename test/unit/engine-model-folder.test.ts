import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../workers/engine/engine.ts";
import { ModelFolderError } from "../../workers/engine/errors.ts";
import { loadModelFolder } from "../../workers/engine/model-folder.ts";

// ---------------------------------------------------------------------------
// Broken copies of a real folder

const MODEL = path.resolve(import.meta.dirname, "../../models/stagebeam-tiny");
let tmp = "";

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sb-folder-test-"));
});
afterAll(async () => {
  if (tmp !== "") await rm(tmp, { recursive: true, force: true });
});

let copies = 0;
async function brokenCopy(change: (dir: string) => Promise<void>): Promise<string> {
  const dir = path.join(tmp, `copy${copies++}`);
  await cp(MODEL, dir, { recursive: true, dereference: true });
  await change(dir);
  return dir;
}
const editJson = (dir: string, file: string, edit: (v: Record<string, unknown>) => void) =>
  readFile(path.join(dir, file), "utf8").then((t) => {
    const v = JSON.parse(t) as Record<string, unknown>;
    edit(v);
    return writeFile(path.join(dir, file), JSON.stringify(v));
  });

/** Renames every occurrence of a name inside an ONNX file (same length, so the protobuf stays valid). */
async function renameInOnnx(dir: string, file: string, from: string, to: string): Promise<void> {
  if (from.length !== to.length) throw new Error("same length only");
  const bytes = await readFile(path.join(dir, file));
  const a = Buffer.from(from);
  const b = Buffer.from(to);
  for (let i = bytes.indexOf(a); i >= 0; i = bytes.indexOf(a, i + 1)) b.copy(bytes, i);
  await writeFile(path.join(dir, file), bytes);
}

async function loadError(p: Promise<unknown>): Promise<ModelFolderError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ModelFolderError);
    return err as ModelFolderError;
  }
  throw new Error("expected a ModelFolderError");
}

describe("model folder validation on broken copies of the bundled model", () => {
  it("loads a valid folder with a stable digest that changes with the files", async () => {
    const dir = await brokenCopy(async () => undefined);
    const a = await loadModelFolder(dir);
    const b = await loadModelFolder(dir);
    expect(a.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b.digest).toBe(a.digest);
    expect(a.files.map((f) => f.name)).toEqual([...a.files.map((f) => f.name)].sort());
    expect(a.spec.imageSeqLength).toBeGreaterThan(0);
    await editJson(dir, "generation_config.json", (v) => (v.top_p = 0.8));
    expect((await loadModelFolder(dir)).digest).not.toBe(a.digest);
    const e = await loadError(loadModelFolder(dir, { expectedDigest: a.digest }));
    expect(e.message).toMatch(/digest sha256:[0-9a-f]+ does not match the expected/);
  });

  it("names a missing file", async () => {
    const dir = await brokenCopy((d) => rm(path.join(d, "tokenizer.json")));
    const e = await loadError(loadModelFolder(dir));
    expect(e.message).toMatch(/missing file tokenizer\.json; a model folder holds vision_encoder\.onnx, embed_tokens\.onnx/);
  });

  it("names a config.json without image_token_id", async () => {
    const dir = await brokenCopy((d) => editJson(d, "config.json", (v) => delete v.image_token_id));
    const e = await loadError(loadModelFolder(dir));
    expect(e.file).toBe("config.json");
    expect(e.message).toMatch(/^config\.json: image_token_id: missing; expected an integer >= 0/);
  });

  it("names a config.json that gives no head size and a bad value", async () => {
    const dir = await brokenCopy((d) =>
      editJson(d, "config.json", (v) => {
        delete v.head_dim;
        delete v.num_attention_heads;
        v.num_hidden_layers = "four";
      }),
    );
    const e = await loadError(loadModelFolder(dir));
    expect(e.message).toMatch(/num_hidden_layers: expected an integer >= 1, got "four"/);
    const dir2 = await brokenCopy((d) =>
      editJson(d, "config.json", (v) => {
        delete v.head_dim;
        delete v.num_attention_heads;
      }),
    );
    expect((await loadError(loadModelFolder(dir2))).message).toMatch(
      /head_dim: expected head_dim, or hidden_size and num_attention_heads/,
    );
  });

  it("names invalid JSON, a bad preprocessor config and bad judge templates", async () => {
    const a = await brokenCopy((d) => writeFile(path.join(d, "generation_config.json"), "{ not json"));
    expect((await loadError(loadModelFolder(a))).message).toMatch(/^generation_config\.json: expected valid JSON/);
    const b = await brokenCopy((d) => editJson(d, "preprocessor_config.json", (v) => (v.image_std = [0.5, 0, 0.5])));
    expect((await loadError(loadModelFolder(b))).message).toMatch(
      /^preprocessor_config\.json: image_std: expected non-zero std values/,
    );
    const c = await brokenCopy((d) => editJson(d, "judge_templates.json", (v) => delete v.verdict_prefix));
    expect((await loadError(loadModelFolder(c))).message).toMatch(/^judge_templates\.json: verdict_prefix: /);
    const d2 = await brokenCopy((d) => editJson(d, "tokenizer_config.json", (v) => delete v.chat_template));
    expect((await loadError(loadModelFolder(d2))).message).toMatch(
      /^tokenizer_config\.json: chat_template: missing; expected a jinja chat template string/,
    );
  });

  it("names a renamed ONNX input when the sessions are checked", async () => {
    const dir = await brokenCopy((d) => renameInOnnx(d, "decoder_model_merged.onnx", "position_ids", "position_idz"));
    const e = await loadError(Engine.load(dir));
    expect(e.message).toMatch(
      /^decoder_model_merged\.onnx: expected input 'position_ids', found inputs_embeds, attention_mask, position_idz, past_key_values\.0\.key/,
    );
    const dir2 = await brokenCopy((d) => renameInOnnx(d, "embed_tokens.onnx", "inputs_embeds", "inputs_embedz"));
    expect((await loadError(Engine.load(dir2))).message).toMatch(
      /^embed_tokens\.onnx: expected output 'inputs_embeds', found inputs_embedz/,
    );
  });

  it("names a config that disagrees with the sessions", async () => {
    const dir = await brokenCopy((d) =>
      editJson(d, "config.json", (v) => (v.num_hidden_layers = (v.num_hidden_layers as number) - 1)),
    );
    expect((await loadError(Engine.load(dir))).message).toMatch(
      /^decoder_model_merged\.onnx: has 'past_key_values\.\d+\.key'.* beyond num_hidden_layers/,
    );
    const dir2 = await brokenCopy((d) => editJson(d, "config.json", (v) => (v.image_token_id = 7)));
    expect((await loadError(Engine.load(dir2))).message).toMatch(
      /^tokenizer\.json: image token "<image>" has id 6; expected image_token_id 7/,
    );
  });
});
