/**
 * Model folder loading and validation: every required file present, JSON files validated with
 * zod, and the folder's digest (model-digest.ts). Every error names the file and what was
 * expected. The ONNX sessions are checked later, against what is read here (session-contract.ts).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { JudgeTemplatesSchema, type JudgeTemplates } from "../../shared/core/prompts/templates.ts";
import { ModelFolderError } from "./errors.ts";
import { modelDigest, normaliseDigest, type DigestedFile } from "./model-digest.ts";
import { DECODER_FILE, EMBED_FILE, JUDGE_TEMPLATES_FILE, REQUIRED_FILES, VISION_FILE } from "./model-files.ts";

// ---------------------------------------------------------------------------
// JSON schemas

const show = (v: unknown): string => {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};
/** zod error callback: "expected <what>, got <value>" (or "missing; expected <what>"). */
const expected = (what: string) => (iss: { input?: unknown }) =>
  iss.input === undefined ? `missing; expected ${what}` : `expected ${what}, got ${show(iss.input)}`;

const intAtLeast = (min: number) => {
  const what = `an integer >= ${min}`;
  return z
    .number({ error: expected(what) })
    .int({ error: expected(what) })
    .min(min, { error: expected(what) });
};
const positiveNumber = (what = "a number > 0") => z.number({ error: expected(what) }).positive({ error: expected(what) });
const tokenIds = z.union([intAtLeast(0), z.array(intAtLeast(0)).min(1)], {
  error: expected("a token id or a non-empty list of token ids"),
});

/** config.json: only what the engine reads; other fields are kept and ignored. */
const ModelConfigSchema = z
  .looseObject({
    model_type: z.string().optional(),
    image_token_id: intAtLeast(0),
    image_seq_length: intAtLeast(1),
    num_hidden_layers: intAtLeast(1),
    num_key_value_heads: intAtLeast(1),
    head_dim: intAtLeast(1).optional(),
    hidden_size: intAtLeast(1).optional(),
    num_attention_heads: intAtLeast(1).optional(),
    vocab_size: intAtLeast(1).optional(),
    max_position_embeddings: intAtLeast(1).optional(),
    bos_token_id: tokenIds.optional(),
    eos_token_id: tokenIds.optional(),
    pad_token_id: tokenIds.nullable().optional(),
  })
  .refine((c) => c.head_dim !== undefined || (c.hidden_size !== undefined && c.num_attention_heads !== undefined), {
    message: "expected head_dim, or hidden_size and num_attention_heads to derive it",
    path: ["head_dim"],
  });

const GenerationConfigSchema = z.looseObject({
  do_sample: z.boolean({ error: expected("true or false") }).optional(),
  temperature: z
    .number({ error: expected("a number >= 0") })
    .min(0, { error: expected("a number >= 0") })
    .optional(),
  top_p: z
    .number({ error: expected("a number in (0, 1]") })
    .gt(0, { error: expected("a number in (0, 1]") })
    .max(1, { error: expected("a number in (0, 1]") })
    .optional(),
  top_k: intAtLeast(0).optional(),
  max_new_tokens: intAtLeast(1).optional(),
  bos_token_id: tokenIds.optional(),
  eos_token_id: tokenIds.optional(),
  pad_token_id: tokenIds.nullable().optional(),
});

const channelValues = (what: string) =>
  z.union([z.number(), z.array(z.number()).length(3)], { error: expected(`${what}: a number or a list of 3 numbers`) });

const PreprocessorConfigSchema = z.looseObject({
  size: z.union([intAtLeast(1), z.object({ height: intAtLeast(1), width: intAtLeast(1) })], {
    error: expected("{ height, width } in pixels (or one number for a square)"),
  }),
  do_resize: z.boolean({ error: expected("true or false") }).default(true),
  /** PIL resampling filter: 0 nearest, 2 bilinear, 3 bicubic, 1 lanczos. */
  resample: z
    .number({ error: expected("a PIL resample code") })
    .int()
    .default(3),
  do_rescale: z.boolean({ error: expected("true or false") }).default(true),
  rescale_factor: positiveNumber().default(1 / 255),
  do_normalize: z.boolean({ error: expected("true or false") }).default(true),
  image_mean: channelValues("image_mean").default([0.5, 0.5, 0.5]),
  image_std: channelValues("image_std")
    .refine((v) => (Array.isArray(v) ? v : [v]).every((x) => x !== 0), { message: "expected non-zero std values" })
    .default([0.5, 0.5, 0.5]),
  do_convert_rgb: z.boolean({ error: expected("true or false") }).default(true),
});

const tokenString = z.union([z.string(), z.object({ content: z.string() })], {
  error: expected('a token string such as "<bos>"'),
});

const TokenizerConfigSchema = z.looseObject({
  chat_template: z.union([z.string().min(1), z.array(z.object({ name: z.string(), template: z.string() })).min(1)], {
    error: expected("a jinja chat template string"),
  }),
  bos_token: tokenString.nullable().optional(),
  eos_token: tokenString.nullable().optional(),
  pad_token: tokenString.nullable().optional(),
  image_token: tokenString.optional(),
  model_max_length: z.number().optional(),
});

const TokenizerJsonSchema = z.looseObject({
  model: z.looseObject({ type: z.string().optional() }, { error: expected("a tokenizer model object") }),
  added_tokens: z.array(z.looseObject({ id: z.number(), content: z.string() })).optional(),
});

// ---------------------------------------------------------------------------
// What the engine derives from the folder

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
  imageSeqLength: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number | null;
  vocabSize: number | null;
  /** The model's context window (max_position_embeddings), when config.json says. */
  contextLength: number | null;
  eosTokenIds: number[];
  bosTokenId: number | null;
}

export interface TokenizerFiles {
  /** Parsed tokenizer.json, handed to @huggingface/tokenizers as is. */
  json: Record<string, unknown>;
  /** Parsed tokenizer_config.json. */
  config: Record<string, unknown>;
  chatTemplate: string;
  bosToken: string;
  eosToken: string;
  imageToken: string;
}

export interface ModelFolder {
  dir: string;
  /** Absolute paths of the three ONNX files. */
  onnx: { vision: string; embed: string; decoder: string };
  spec: ModelSpec;
  generation: GenerationDefaults;
  preprocessor: PreprocessorSpec;
  tokenizer: TokenizerFiles;
  judgeTemplates: JudgeTemplates;
  /** `sha256:<hex>` over the model files (see modelDigest). */
  digest: string;
  /** The files that went into the digest, with their own sha256. */
  files: DigestedFile[];
}

export interface LoadModelFolderOptions {
  /** Fail unless the folder's digest equals this (`sha256:<hex>` or bare hex). */
  expectedDigest?: string;
  /** Use these judge templates when the folder has no judge_templates.json. */
  judgeTemplates?: JudgeTemplates;
}

// ---------------------------------------------------------------------------
// Loading

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const at = i.path.length === 0 ? "" : `${i.path.map(String).join(".")}: `;
      return `${at}${i.message}`;
    })
    .join("; ");
}

async function readJson(dir: string, file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path.join(dir, file), "utf8");
  } catch (err) {
    throw new ModelFolderError(dir, file, `cannot be read (${(err as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelFolderError(dir, file, `expected valid JSON (${(err as Error).message})`);
  }
}

async function parseJsonFile<S extends z.ZodType>(dir: string, file: string, schema: S): Promise<z.output<S>> {
  const raw = await readJson(dir, file);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ModelFolderError(dir, file, `expected a JSON object, got ${show(raw)}`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new ModelFolderError(dir, file, formatIssues(r.error));
  return r.data;
}

const firstId = (v: number | number[] | null | undefined): number | null =>
  v === undefined || v === null ? null : Array.isArray(v) ? (v[0] ?? null) : v;
const allIds = (v: number | number[] | null | undefined): number[] =>
  v === undefined || v === null ? [] : Array.isArray(v) ? v : [v];
const tokenText = (v: string | { content: string } | null | undefined): string | null =>
  v === undefined || v === null ? null : typeof v === "string" ? v : v.content;
const triple = (v: number | number[]): [number, number, number] => (Array.isArray(v) ? [v[0]!, v[1]!, v[2]!] : [v, v, v]);

/** Reads and validates a model folder (files and JSON); the ONNX contract is checked by checkSessionContract. */
export async function loadModelFolder(dirInput: string, options: LoadModelFolderOptions = {}): Promise<ModelFolder> {
  const dir = path.resolve(dirInput);
  let entries: string[];
  try {
    const s = await stat(dir);
    if (!s.isDirectory()) throw new Error("not a directory");
    entries = await readdir(dir);
  } catch (err) {
    throw new ModelFolderError(dir, null, `expected a readable directory (${(err as Error).message})`);
  }
  const needed: string[] = [...REQUIRED_FILES];
  if (options.judgeTemplates === undefined) needed.push(JUDGE_TEMPLATES_FILE);
  const missing = needed.filter((f) => !entries.includes(f));
  if (missing.length > 0) {
    throw new ModelFolderError(
      dir,
      null,
      `missing ${missing.length === 1 ? "file" : "files"} ${missing.join(", ")}; a model folder holds ${needed.join(", ")}`,
    );
  }
  for (const f of needed) {
    const s = await stat(path.join(dir, f));
    if (!s.isFile()) throw new ModelFolderError(dir, f, "expected a regular file");
    if (s.size === 0) throw new ModelFolderError(dir, f, "is empty (0 bytes)");
  }

  // config.json: text-model fields may sit under text_config (LLaVA-style configs).
  const rawConfig = await readJson(dir, "config.json");
  if (typeof rawConfig !== "object" || rawConfig === null || Array.isArray(rawConfig)) {
    throw new ModelFolderError(dir, "config.json", `expected a JSON object, got ${show(rawConfig)}`);
  }
  const top = rawConfig as Record<string, unknown>;
  const textConfig =
    typeof top.text_config === "object" && top.text_config !== null ? (top.text_config as Record<string, unknown>) : {};
  const merged: Record<string, unknown> = { ...textConfig, ...top };
  if (merged.image_token_id === undefined && typeof merged.image_token_index === "number")
    merged.image_token_id = merged.image_token_index;
  const cfgResult = ModelConfigSchema.safeParse(merged);
  if (!cfgResult.success) throw new ModelFolderError(dir, "config.json", formatIssues(cfgResult.error));
  const cfg = cfgResult.data;

  const gen = await parseJsonFile(dir, "generation_config.json", GenerationConfigSchema);
  const pre = await parseJsonFile(dir, "preprocessor_config.json", PreprocessorConfigSchema);
  const tokConfig = await parseJsonFile(dir, "tokenizer_config.json", TokenizerConfigSchema);
  const tokJson = await parseJsonFile(dir, "tokenizer.json", TokenizerJsonSchema);

  let judgeTemplates: JudgeTemplates;
  if (entries.includes(JUDGE_TEMPLATES_FILE)) {
    judgeTemplates = await parseJsonFile(dir, JUDGE_TEMPLATES_FILE, JudgeTemplatesSchema);
  } else {
    judgeTemplates = options.judgeTemplates!;
  }

  const eos = allIds(cfg.eos_token_id).length > 0 ? allIds(cfg.eos_token_id) : allIds(gen.eos_token_id);
  if (eos.length === 0) {
    throw new ModelFolderError(
      dir,
      "config.json",
      "missing eos_token_id (nor in generation_config.json); expected the end-of-sequence token id",
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
  const spec: ModelSpec = {
    modelType: cfg.model_type ?? null,
    imageTokenId: cfg.image_token_id,
    imageSeqLength: cfg.image_seq_length,
    numLayers: cfg.num_hidden_layers,
    numKvHeads: cfg.num_key_value_heads,
    headDim,
    hiddenSize: cfg.hidden_size ?? null,
    vocabSize: cfg.vocab_size ?? null,
    contextLength: cfg.max_position_embeddings ?? null,
    eosTokenIds: eos,
    bosTokenId: firstId(cfg.bos_token_id) ?? firstId(gen.bos_token_id),
  };

  const chatTemplate = Array.isArray(tokConfig.chat_template)
    ? (tokConfig.chat_template.find((t) => t.name === "default") ?? tokConfig.chat_template[0]!).template
    : tokConfig.chat_template;
  const tokenizer: TokenizerFiles = {
    json: tokJson,
    config: tokConfig,
    chatTemplate,
    bosToken: tokenText(tokConfig.bos_token) ?? "",
    eosToken: tokenText(tokConfig.eos_token) ?? "",
    imageToken: tokenText(tokConfig.image_token) ?? "<image>",
  };

  const size = typeof pre.size === "number" ? { height: pre.size, width: pre.size } : pre.size;
  const preprocessor: PreprocessorSpec = {
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

  const generation: GenerationDefaults = {
    doSample: gen.do_sample ?? false,
    temperature: gen.temperature ?? 1,
    topP: gen.top_p ?? 1,
    topK: gen.top_k ?? 0,
    maxNewTokens: gen.max_new_tokens ?? null,
  };

  const { digest, files } = await modelDigest(dir);
  if (options.expectedDigest !== undefined && normaliseDigest(options.expectedDigest) !== digest) {
    throw new ModelFolderError(
      dir,
      null,
      `digest ${digest} does not match the expected ${normaliseDigest(options.expectedDigest)}`,
    );
  }

  return {
    dir,
    onnx: { vision: path.join(dir, VISION_FILE), embed: path.join(dir, EMBED_FILE), decoder: path.join(dir, DECODER_FILE) },
    spec,
    generation,
    preprocessor,
    tokenizer,
    judgeTemplates,
    digest,
    files,
  };
}
