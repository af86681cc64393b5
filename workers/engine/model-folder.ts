/**
 * Model folder loading and validation: the bundled model's layout and onnx-community exports as
 * published (model-files.ts resolves the session files per dtype), JSON files validated with
 * zod (model-schemas.ts), the family recognised (model-family.ts), and the folder's digest
 * (model-digest.ts). Every error names the file and what was expected. The ONNX sessions are
 * checked later, against what is read here (session-contract.ts).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { z } from "zod";
import type { DtypeSetting } from "../../shared/io/config.ts";
import { DEFAULT_JUDGE_TEMPLATES } from "../../shared/core/prompts/judge-defaults.ts";
import { JudgeTemplatesSchema, type JudgeTemplates } from "../../shared/core/prompts/templates.ts";
import { ModelFolderError } from "./errors.ts";
import { modelFamily, type ModelFamily } from "./model-family.ts";
import { modelDigest, normaliseDigest, type DigestedFile } from "./model-digest.ts";
import {
  type CHAT_TEMPLATE_FILES,
  JSON_FILES,
  JUDGE_TEMPLATES_FILE,
  PROCESSOR_CONFIG_FILE,
  REQUIRED_FILES,
  resolveSessionFiles,
  sessionDtypes,
  type SessionFiles,
} from "./model-files.ts";
import {
  ChatTemplateJsonSchema,
  fixedSizePreprocessor,
  GenerationConfigSchema,
  ModelConfigSchema,
  PREPROCESSOR_SCHEMAS,
  ProcessorConfigSchema,
  showValue,
  TokenizerConfigSchema,
  TokenizerJsonSchema,
  tokenText,
} from "./model-schemas.ts";

// ---------------------------------------------------------------------------
// What the engine derives from the folder

/** The bundled model's image preprocessing: one fixed resize, rescale and normalise. */
export interface PreprocessorSpec {
  height: number;
  width: number;
  doResize: boolean;
  resample: number;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  mean: [number, number, number];
  std: [number, number, number];
}

export interface GenerationDefaults {
  doSample: boolean;
  temperature: number;
  topP: number;
  topK: number;
  maxNewTokens: number | null;
}

export interface ModelSpec {
  modelType: string | null;
  imageTokenId: number;
  /** Image tokens per image (per tile for Idefics3); null when the family computes it per image (Qwen2-VL). */
  imageSeqLength: number | null;
  /** Decoder layers with a self-attention KV cache (past_key_values.0 … numLayers - 1): all of them but the cross-attention ones. */
  numLayers: number;
  /** mllama: the decoder layers that cross-attend to the image (text_config.cross_attention_layers); empty for other families. */
  crossAttentionLayers: number[];
  numKvHeads: number;
  headDim: number;
  hiddenSize: number | null;
  vocabSize: number | null;
  /** The model's context window (max_position_embeddings), when config.json says. */
  contextLength: number | null;
  eosTokenIds: number[];
  bosTokenId: number | null;
}

/** Where the chat template came from. */
export type ChatTemplateSource = (typeof CHAT_TEMPLATE_FILES)[number];
/** Where the judge templates came from: the folder, the caller, or the paper's defaults. */
export type JudgeTemplatesSource = typeof JUDGE_TEMPLATES_FILE | "option" | "default";

export interface TokenizerFiles {
  /** Parsed tokenizer.json, handed to @huggingface/tokenizers as is. */
  json: Record<string, unknown>;
  /** Parsed tokenizer_config.json. */
  config: Record<string, unknown>;
  chatTemplate: string;
  chatTemplateSource: ChatTemplateSource;
  bosToken: string;
  eosToken: string;
  imageToken: string;
}

/** The JSON files as parsed, for the family's processor (which reads fields the engine does not). */
export interface FolderConfigs {
  config: Record<string, unknown>;
  preprocessor: Record<string, unknown>;
  /** processor_config.json, when the folder has one. */
  processor: Record<string, unknown> | null;
}

export interface ModelFolder {
  dir: string;
  family: ModelFamily;
  /** The file of each session for the chosen dtypes, relative to dir. */
  sessions: SessionFiles;
  /** Absolute paths of the three ONNX files. */
  onnx: { vision: string; embed: string; decoder: string };
  spec: ModelSpec;
  generation: GenerationDefaults;
  /** The fixed resize of the bundled kind; null for a published family, whose processor reads `configs`. */
  preprocessor: PreprocessorSpec | null;
  configs: FolderConfigs;
  tokenizer: TokenizerFiles;
  judgeTemplates: JudgeTemplates;
  judgeTemplatesSource: JudgeTemplatesSource;
  /** `sha256:<hex>` over the files loaded (see modelDigest). */
  digest: string;
  /** The files that went into the digest, with their own sha256. */
  files: DigestedFile[];
}

export interface LoadModelFolderOptions {
  /** Fail unless the folder's digest equals this (`sha256:<hex>` or bare hex). */
  expectedDigest?: string;
  /** Use these judge templates when the folder has no judge_templates.json (else the paper's). */
  judgeTemplates?: JudgeTemplates;
  /** Which dtype each session loads (MODEL_DTYPE); else config.json's transformers.js_config, else fp32. */
  dtype?: DtypeSetting;
}

// ---------------------------------------------------------------------------
// Reading

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const at = i.path.length === 0 ? "" : `${i.path.map(String).join(".")}: `;
      return `${at}${i.message}`;
    })
    .join("; ");
}

async function readText(dir: string, file: string): Promise<string> {
  try {
    return await readFile(path.join(dir, file), "utf8");
  } catch (err) {
    throw new ModelFolderError(dir, file, `cannot be read (${(err as Error).message})`);
  }
}

async function readObject(dir: string, file: string): Promise<Record<string, unknown>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readText(dir, file));
  } catch (err) {
    if (err instanceof ModelFolderError) throw err;
    throw new ModelFolderError(dir, file, `expected valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ModelFolderError(dir, file, `expected a JSON object, got ${showValue(raw)}`);
  }
  return raw as Record<string, unknown>;
}

function validate<S extends z.ZodType>(dir: string, file: string, schema: S, raw: unknown): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) throw new ModelFolderError(dir, file, formatIssues(r.error));
  return r.data;
}

const parseJsonFile = async <S extends z.ZodType>(dir: string, file: string, schema: S): Promise<z.output<S>> =>
  validate(dir, file, schema, await readObject(dir, file));

const firstId = (v: number | number[] | null | undefined): number | null =>
  v === undefined || v === null ? null : Array.isArray(v) ? (v[0] ?? null) : v;
const allIds = (v: number | number[] | null | undefined): number[] =>
  v === undefined || v === null ? [] : Array.isArray(v) ? v : [v];
const triple = (v: number | number[]): [number, number, number] => (Array.isArray(v) ? [v[0]!, v[1]!, v[2]!] : [v, v, v]);

type TemplateValue = string | { name: string; template: string }[];
const pickTemplate = (t: TemplateValue): string =>
  Array.isArray(t) ? (t.find((x) => x.name === "default") ?? t[0]!).template : t;

/** The chat template, from the first of chat_template.jinja, chat_template.json, tokenizer_config.json that has one. */
async function readChatTemplate(
  dir: string,
  entries: readonly string[],
  tokenizerConfig: { chat_template?: TemplateValue | undefined },
): Promise<{ template: string; source: ChatTemplateSource }> {
  if (entries.includes("chat_template.jinja")) {
    const template = await readText(dir, "chat_template.jinja");
    if (template.trim() === "")
      throw new ModelFolderError(dir, "chat_template.jinja", "is empty; expected a jinja chat template");
    return { template, source: "chat_template.jinja" };
  }
  if (entries.includes("chat_template.json")) {
    const json = await parseJsonFile(dir, "chat_template.json", ChatTemplateJsonSchema);
    return { template: pickTemplate(json.chat_template), source: "chat_template.json" };
  }
  if (tokenizerConfig.chat_template === undefined) {
    throw new ModelFolderError(
      dir,
      "tokenizer_config.json",
      "chat_template: missing; expected a jinja chat template string (or a chat_template.jinja or chat_template.json file)",
    );
  }
  return { template: pickTemplate(tokenizerConfig.chat_template), source: "tokenizer_config.json" };
}

/** The text-model fields of config.json: under text_config for LLaVA-style and Qwen2.5-VL configs, at the top for Qwen2-VL. */
function flattenConfig(top: Record<string, unknown>): Record<string, unknown> {
  const textConfig =
    typeof top.text_config === "object" && top.text_config !== null ? (top.text_config as Record<string, unknown>) : {};
  const merged: Record<string, unknown> = { ...textConfig, ...top };
  if (merged.image_token_id === undefined && typeof merged.image_token_index === "number")
    merged.image_token_id = merged.image_token_index;
  return merged;
}

function imageSeqLength(
  dir: string,
  family: ModelFamily,
  fromConfig: number | undefined,
  processor: z.output<typeof ProcessorConfigSchema> | null,
): number | null {
  if (family.imageTokens === "image" || family.imageTokens === "cross") return null;
  if (family.imageTokens === "processor") {
    if (processor?.image_seq_len === undefined) {
      throw new ModelFolderError(
        dir,
        PROCESSOR_CONFIG_FILE,
        `image_seq_len: missing; expected an integer >= 1 (image tokens per tile for ${family.name})`,
      );
    }
    return processor.image_seq_len;
  }
  if (fromConfig === undefined) {
    throw new ModelFolderError(
      dir,
      "config.json",
      `image_seq_length: missing; expected an integer >= 1 (image tokens per image for ${family.name})`,
    );
  }
  return fromConfig;
}

function fixedResize(raw: Record<string, unknown>): PreprocessorSpec {
  const pre = fixedSizePreprocessor(raw);
  const size = typeof pre.size === "number" ? { height: pre.size, width: pre.size } : pre.size;
  return {
    height: size.height,
    width: size.width,
    doResize: pre.do_resize,
    resample: pre.resample,
    doRescale: pre.do_rescale,
    rescaleFactor: pre.rescale_factor,
    doNormalize: pre.do_normalize,
    mean: triple(pre.image_mean),
    std: triple(pre.image_std),
  };
}

/** text_config.cross_attention_layers of an mllama config: distinct layer indices below num_hidden_layers, not all of them. */
function crossLayers(dir: string, cfg: { cross_attention_layers?: number[] | undefined; num_hidden_layers: number }): number[] {
  const layers = cfg.cross_attention_layers;
  if (layers === undefined || layers.length === 0) {
    throw new ModelFolderError(
      dir,
      "config.json",
      "text_config.cross_attention_layers: missing; expected the decoder layers that cross-attend to the image",
    );
  }
  const bad = layers.find((l, i) => l >= cfg.num_hidden_layers || layers.indexOf(l) !== i);
  if (bad !== undefined || layers.length >= cfg.num_hidden_layers) {
    throw new ModelFolderError(
      dir,
      "config.json",
      `text_config.cross_attention_layers: [${layers.join(", ")}]; expected distinct indices below num_hidden_layers ${cfg.num_hidden_layers}, leaving self-attention layers`,
    );
  }
  return [...layers].sort((a, b) => a - b);
}

async function listFolder(dir: string): Promise<string[]> {
  try {
    const s = await stat(dir);
    if (!s.isDirectory()) throw new Error("not a directory");
    return await readdir(dir);
  } catch (err) {
    throw new ModelFolderError(dir, null, `expected a readable directory (${(err as Error).message})`);
  }
}

async function checkFiles(dir: string, files: readonly string[]): Promise<void> {
  for (const f of files) {
    const s = await stat(path.join(dir, f));
    if (!s.isFile()) throw new ModelFolderError(dir, f, "expected a regular file");
    if (s.size === 0) throw new ModelFolderError(dir, f, "is empty (0 bytes)");
  }
}

// ---------------------------------------------------------------------------
// Loading

/** Reads and validates a model folder (files and JSON); the ONNX contract is checked by checkSessionContract. */
export async function loadModelFolder(dirInput: string, options: LoadModelFolderOptions = {}): Promise<ModelFolder> {
  const dir = path.resolve(dirInput);
  const entries = await listFolder(dir);
  const missing = JSON_FILES.filter((f) => !entries.includes(f));
  if (missing.length > 0) {
    throw new ModelFolderError(
      dir,
      null,
      `missing ${missing.length === 1 ? "file" : "files"} ${missing.join(", ")}; a model folder holds ${REQUIRED_FILES.join(", ")} (the .onnx files at its root or in onnx/, with a dtype suffix)`,
    );
  }
  await checkFiles(dir, JSON_FILES);

  const rawConfig = await readObject(dir, "config.json");
  const cfg = validate(dir, "config.json", ModelConfigSchema, flattenConfig(rawConfig));
  const family = modelFamily(dir, cfg.model_type);
  const dtypes = sessionDtypes(dir, options.dtype, cfg["transformers.js_config"]?.dtype);
  const sessions = await resolveSessionFiles(dir, entries, dtypes);
  const sessionFiles = Object.values(sessions).flatMap((s) => [s.file, ...s.externalData]);
  await checkFiles(dir, sessionFiles);

  const gen = await parseJsonFile(dir, "generation_config.json", GenerationConfigSchema);
  const rawPreprocessor = await readObject(dir, "preprocessor_config.json");
  validate(dir, "preprocessor_config.json", PREPROCESSOR_SCHEMAS[family.name], rawPreprocessor);
  const hasProcessorConfig = entries.includes(PROCESSOR_CONFIG_FILE);
  const rawProcessor = hasProcessorConfig ? await readObject(dir, PROCESSOR_CONFIG_FILE) : null;
  const processor = rawProcessor === null ? null : validate(dir, PROCESSOR_CONFIG_FILE, ProcessorConfigSchema, rawProcessor);
  const tokConfig = await parseJsonFile(dir, "tokenizer_config.json", TokenizerConfigSchema);
  const tokJson = await parseJsonFile(dir, "tokenizer.json", TokenizerJsonSchema);
  const chat = await readChatTemplate(dir, entries, tokConfig);

  const hasJudgeFile = entries.includes(JUDGE_TEMPLATES_FILE);
  const judgeTemplatesSource: JudgeTemplatesSource = hasJudgeFile
    ? JUDGE_TEMPLATES_FILE
    : options.judgeTemplates !== undefined
      ? "option"
      : "default";
  const judgeTemplates = hasJudgeFile
    ? await parseJsonFile(dir, JUDGE_TEMPLATES_FILE, JudgeTemplatesSchema)
    : (options.judgeTemplates ?? DEFAULT_JUDGE_TEMPLATES);

  // generation_config.json's list is what generate() stops on (Idefics3 and Qwen2-VL list more than config.json).
  const eos = allIds(gen.eos_token_id).length > 0 ? allIds(gen.eos_token_id) : allIds(cfg.eos_token_id);
  if (eos.length === 0) {
    throw new ModelFolderError(
      dir,
      "generation_config.json",
      "missing eos_token_id (nor in config.json); expected the end-of-sequence token id(s)",
    );
  }
  const headDim = cfg.head_dim ?? cfg.hidden_size! / cfg.num_attention_heads!;
  if (!Number.isInteger(headDim)) {
    throw new ModelFolderError(
      dir,
      "config.json",
      `hidden_size ${cfg.hidden_size} is not a multiple of num_attention_heads ${cfg.num_attention_heads}; expected head_dim`,
    );
  }
  const crossAttentionLayers = family.vision === "cross" ? crossLayers(dir, cfg) : [];
  const spec: ModelSpec = {
    modelType: cfg.model_type ?? null,
    imageTokenId: cfg.image_token_id,
    imageSeqLength: imageSeqLength(dir, family, cfg.image_seq_length, processor),
    numLayers: cfg.num_hidden_layers - crossAttentionLayers.length,
    crossAttentionLayers,
    numKvHeads: cfg.num_key_value_heads,
    headDim,
    hiddenSize: cfg.hidden_size ?? null,
    vocabSize: cfg.vocab_size ?? null,
    contextLength: cfg.max_position_embeddings ?? null,
    eosTokenIds: eos,
    bosTokenId: firstId(cfg.bos_token_id) ?? firstId(gen.bos_token_id),
  };

  const tokenizer: TokenizerFiles = {
    json: tokJson,
    config: tokConfig,
    chatTemplate: chat.template,
    chatTemplateSource: chat.source,
    bosToken: tokenText(tokConfig.bos_token) ?? "",
    eosToken: tokenText(tokConfig.eos_token) ?? "",
    imageToken: tokenText(tokConfig.image_token) ?? tokenText(processor?.image_token) ?? family.imageToken,
  };

  const generation: GenerationDefaults = {
    doSample: gen.do_sample ?? false,
    temperature: gen.temperature ?? 1,
    topP: gen.top_p ?? 1,
    topK: gen.top_k ?? 0,
    maxNewTokens: gen.max_new_tokens ?? null,
  };

  const read = [
    ...JSON_FILES,
    ...sessionFiles,
    ...(hasProcessorConfig ? [PROCESSOR_CONFIG_FILE] : []),
    ...(chat.source === "tokenizer_config.json" ? [] : [chat.source]),
    ...(hasJudgeFile ? [JUDGE_TEMPLATES_FILE] : []),
  ];
  const { digest, files } = await modelDigest(dir, read);
  if (options.expectedDigest !== undefined && normaliseDigest(options.expectedDigest) !== digest) {
    throw new ModelFolderError(
      dir,
      null,
      `digest ${digest} does not match the expected ${normaliseDigest(options.expectedDigest)}`,
    );
  }

  const at = (file: string) => path.join(dir, file);
  return {
    dir,
    family,
    sessions,
    onnx: {
      vision: at(sessions.vision_encoder.file),
      embed: at(sessions.embed_tokens.file),
      decoder: at(sessions.decoder_model_merged.file),
    },
    spec,
    generation,
    preprocessor: family.name === "stagebeam-tiny" ? fixedResize(rawPreprocessor) : null,
    configs: { config: rawConfig, preprocessor: rawPreprocessor, processor: rawProcessor },
    tokenizer,
    judgeTemplates,
    judgeTemplatesSource,
    digest,
    files,
  };
}
