/**
 * The model runtime: model folder, tokenizer, image preprocessing, ONNX sessions, KV cache,
 * sampler and batched decoding. No Redis or S3 in here; the fleet worker and the CLI use it
 * through `Engine`.
 */
export {
  Engine,
  type EngineCounters,
  type EngineInfo,
  type EngineLogger,
  type EngineOptions,
  type EngineRuntime,
  type OpenItemInput,
} from "./engine.ts";
export type { ItemContext } from "./item.ts";
export type { JudgeMode, PairwiseJudgeMode } from "../../shared/core/search/settings.ts";
export type { EngineObserver } from "./batch-executor.ts";
export type { SamplingParams } from "./sampler.ts";
export { REFERENCE_SAMPLING } from "./sampler.ts";
export { Verifier, readVerifierTemplate } from "./verifier.ts";
export { openItemExecutor, openVerifierItem, type ItemExecutor, type VerifierItem } from "./executor.ts";
export { EngineRequestError, ItemInputError, ModelFolderError } from "./errors.ts";
export { loadModelFolder, type ModelFolder } from "./model-folder.ts";
export { modelDigest } from "./model-digest.ts";
export { REQUIRED_FILES } from "./model-files.ts";
export { DEFAULT_IMAGE_LIMITS, type ImageLimits } from "../../shared/io/image-policy.ts";
