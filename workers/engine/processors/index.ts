/**
 * Chooses a model folder's processor by config.json `model_type`. Each family's module (and with
 * it transformers.js, a large import) is loaded only when a folder of that family is.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { ModelFolderError } from "../errors.ts";
import type { ImageLimits } from "../image.ts";
import type { Processor } from "./processor.ts";

export type { BoolTensor, FloatTensor, MropePrompt, ProcessedPrompt, Processor } from "./processor.ts";

const id = z.number().int().nonnegative();
const LlavaConfig = z.object({ image_token_index: id, vision_feature_select_strategy: z.string().optional() });
const Idefics3Config = z.object({ image_token_id: id });
const Qwen2VLConfig = z.object({
  image_token_id: id,
  vision_start_token_id: id,
  vision_config: z.object({ spatial_merge_size: z.number().int().positive().optional() }),
});

async function readConfig(dir: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(path.join(dir, "config.json"), "utf8"));
  } catch (err) {
    throw new ModelFolderError(dir, "config.json", `cannot be read as JSON (${(err as Error).message})`);
  }
}

function parse<S extends z.ZodType>(dir: string, schema: S, config: unknown): z.output<S> {
  const r = schema.safeParse(config);
  if (!r.success) throw new ModelFolderError(dir, "config.json", z.prettifyError(r.error));
  return r.data;
}

/** The processor for the model folder at `dir`; throws a ModelFolderError for a family with none. */
export async function loadProcessor(dir: string, limits?: ImageLimits): Promise<Processor> {
  const config = await readConfig(dir);
  switch (config.model_type) {
    case "stagebeam-tiny": {
      const [{ loadModelFolder }, { EngineTokenizer }, { bundledProcessor }] = await Promise.all([
        import("../model-folder.ts"),
        import("../tokenizer.ts"),
        import("./bundled.ts"),
      ]);
      const folder = await loadModelFolder(dir);
      return bundledProcessor(folder, new EngineTokenizer(folder), limits);
    }
    case "llava":
      return (await import("./llava.ts")).loadLlavaProcessor(dir, parse(dir, LlavaConfig, config), limits);
    case "idefics3":
    case "smolvlm":
      return (await import("./idefics3.ts")).loadIdefics3Processor(dir, parse(dir, Idefics3Config, config), limits);
    case "qwen2_vl":
      return (await import("./qwen2-vl.ts")).loadQwen2VLProcessor(dir, parse(dir, Qwen2VLConfig, config), limits);
    default:
      throw new ModelFolderError(
        dir,
        "config.json",
        `model_type ${JSON.stringify(config.model_type)} has no processor; expected stagebeam-tiny, llava, idefics3, smolvlm or qwen2_vl`,
      );
  }
}
