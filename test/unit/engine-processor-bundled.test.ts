import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ItemInputError, ModelFolderError } from "../../workers/engine/errors.ts";
import { preprocessImage } from "../../workers/engine/image.ts";
import { loadModelFolder } from "../../workers/engine/model-folder.ts";
import { loadProcessor } from "../../workers/engine/processors/index.ts";
import { EngineTokenizer } from "../../workers/engine/tokenizer.ts";

const MODEL = "models/stagebeam-tiny";
const IMAGE = readFileSync("apps/demo/sample/s42-000000.png");

describe("the bundled family's processor", () => {
  it("gives the ids and pixels the engine's own path gives", async () => {
    const folder = await loadModelFolder(MODEL);
    const tokenizer = new EngineTokenizer(folder);
    const processor = await loadProcessor(await loadModelFolder(MODEL));
    const question = "How many red objects?";
    const out = await processor.process("item", IMAGE, tokenizer.renderPrompt(question));
    expect(processor.modelType).toBe("stagebeam-tiny");
    expect(out.inputIds).toEqual(tokenizer.promptIds(question));
    expect(out.imageTokenCount).toBe(tokenizer.imageSeqLength);
    expect(out.pixelValues.dims).toEqual([1, 3, 128, 128]);
    expect(out.pixelValues.data).toEqual(await preprocessImage("item", IMAGE, folder.preprocessor!));
  });

  it("refuses a prompt that holds the image placeholder twice", async () => {
    const processor = await loadProcessor(await loadModelFolder(MODEL));
    const prompt = `${processor.imageToken} and ${processor.imageToken}`;
    await expect(processor.process("item", IMAGE, prompt)).rejects.toThrow(ItemInputError);
  });

  it("names config.json for a model_type with no processor", async () => {
    // loadModelFolder refuses this model_type itself; the folder is what it would have given.
    const folder = { dir: "gpt2-folder", family: { name: "gpt2" }, configs: { config: { model_type: "gpt2" } } } as never;
    await expect(loadProcessor(folder)).rejects.toThrow(ModelFolderError);
    await expect(loadProcessor(folder)).rejects.toThrow(/config\.json: model_type "gpt2" has no processor/);
  });
});
