/** The files of a model folder, by name: what must be there and what the ONNX sessions are called. */
export const VISION_FILE = "vision_encoder.onnx";
export const EMBED_FILE = "embed_tokens.onnx";
export const DECODER_FILE = "decoder_model_merged.onnx";
export const JUDGE_TEMPLATES_FILE = "judge_templates.json";

export const REQUIRED_FILES = [
  VISION_FILE,
  EMBED_FILE,
  DECODER_FILE,
  "config.json",
  "generation_config.json",
  "preprocessor_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
] as const;
