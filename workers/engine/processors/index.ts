/**
 * Chooses a model folder's processor by config.json `model_type`. Each family's module (and with
 * it transformers.js, a large import) is loaded only when a folder of that family is.
 */
import { z } from "zod";
import { ModelFolderError } from "../errors.ts";
import type { ImageLimits } from "../../../shared/io/image-policy.ts";
import type { ModelFolder } from "../model-folder.ts";
import type { Processor } from "./processor.ts";

export type {
  BoolTensor,
  CrossImage,
  FloatTensor,
  MropePrompt,
  ProcessedItem,
  ProcessedPrompt,
  Processor,
  VisionInput,
} from "./processor.ts";

const id = z.number().int().nonnegative();
const LlavaConfig = z.object({ image_token_index: id, vision_feature_select_strategy: z.string().optional() });
const Idefics3Config = z.object({ image_token_id: id });
const Qwen2VLConfig = z.object({
  image_token_id: id,
  vision_start_token_id: id,
  vision_config: z.object({ spatial_merge_size: z.number().int().positive().optional() }),
});

function parse<S extends z.ZodType>(dir: string, schema: S, config: unknown): z.output<S> {
  const r = schema.safeParse(config);
  if (!r.success) throw new ModelFolderError(dir, "config.json", z.prettifyError(r.error));
  return r.data;
}

/**
 * The processor for a loaded model folder, by its family, with the family's fields of config.json
 * (`configs.config`, as read); throws a ModelFolderError for a family with none.
 */
export async function loadProcessor(
  folder: Pick<ModelFolder, "dir" | "family" | "configs" | "preprocessor" | "tokenizer" | "spec">,
  limits?: ImageLimits,
): Promise<Processor> {
  const { dir } = folder;
  const config = folder.configs.config;
  switch (folder.family.name) {
    case "stagebeam-tiny": {
      const [{ EngineTokenizer }, { bundledProcessor }] = await Promise.all([import("../tokenizer.ts"), import("./bundled.ts")]);
      return bundledProcessor(folder, new EngineTokenizer(folder), limits);
    }
    case "llava":
      return (await import("./llava.ts")).loadLlavaProcessor(dir, parse(dir, LlavaConfig, config), limits);
    case "idefics3":
    case "smolvlm": {
      const imageSeqLen = folder.spec.imageSeqLength;
      // The folder loader requires it for this family.
      if (imageSeqLen === null) throw new Error("Idefics3 folder without image_seq_len");
      const parsed = parse(dir, Idefics3Config, config);
      return (await import("./idefics3.ts")).loadIdefics3Processor(dir, { ...parsed, image_seq_len: imageSeqLen }, limits);
    }
    // Qwen2.5-VL's processor is Qwen2-VL's (transformers.js: `Qwen2_5_VLProcessor extends Qwen2VLProcessor`);
    // for a still image Python's rope index is the same too (second_per_grid_ts is for video).
    case "qwen2_vl":
    case "qwen2_5_vl": {
      const parsed = parse(dir, Qwen2VLConfig, config);
      return (await import("./qwen2-vl.ts")).loadQwen2VLProcessor(dir, folder.family.name, parsed, limits);
    }
    case "mllama": {
      const [{ EngineTokenizer }, { mllamaProcessor }, { mllamaPreprocessor }] = await Promise.all([
        import("../tokenizer.ts"),
        import("./mllama.ts"),
        import("../model-schemas.ts"),
      ]);
      // The folder loader has validated preprocessor_config.json against the same schema.
      const pre = mllamaPreprocessor(folder.configs.preprocessor);
      return mllamaProcessor(new EngineTokenizer(folder), pre, folder.tokenizer.imageToken, limits);
    }
    default:
      throw new ModelFolderError(
        dir,
        "config.json",
        `model_type ${JSON.stringify(folder.family.name)} has no processor; expected stagebeam-tiny, llava, idefics3, smolvlm, qwen2_vl, qwen2_5_vl or mllama`,
      );
  }
}
