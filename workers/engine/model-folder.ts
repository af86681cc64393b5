/**
 * Model folder loading and validation (DESIGN §3): every required file present, JSON files
 * validated with zod, the ONNX sessions' inputs and outputs checked against the contract,
 * and a digest over the files for traces. Every error names the file and what was expected.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { JudgeTemplatesSchema, type JudgeTemplates } from "../../shared/core/prompts/templates.ts";
import { ModelFolderError } from "./errors.ts";

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
  files: { name: string; bytes: number; sha256: string }[];
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

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The files a digest covers: the required ones, the judge templates and ONNX external data. */
async function digestFileNames(dir: string): Promise<string[]> {
  const names = new Set<string>(REQUIRED_FILES);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    if (entry.name === JUDGE_TEMPLATES_FILE || /\.onnx[._]data$/.test(entry.name)) names.add(entry.name);
  }
  return [...names].sort();
}

/**
 * `sha256:` + sha256 of the lines `<sha256 of file>  <name>\n` for the model files sorted by
 * name, i.e. what `sha256sum <files sorted> | sha256sum` prints.
 */
export async function modelDigest(dir: string): Promise<{ digest: string; files: ModelFolder["files"] }> {
  const files: ModelFolder["files"] = [];
  for (const name of await digestFileNames(dir)) {
    const full = path.join(dir, name);
    files.push({ name, bytes: (await stat(full)).size, sha256: await sha256File(full) });
  }
  const outer = createHash("sha256");
  for (const f of files) outer.update(`${f.sha256}  ${f.name}\n`);
  return { digest: `sha256:${outer.digest("hex")}`, files };
}

export function normaliseDigest(digest: string): string {
  const d = digest.trim().toLowerCase();
  return d.startsWith("sha256:") ? d : `sha256:${d}`;
}

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

// ---------------------------------------------------------------------------
// ONNX contract

export type Dim = number | string;
export interface TensorSignature {
  name: string;
  /** Element type (`float32`, `float16`, `int64`, …) when the runtime reports it. */
  type?: string;
  shape?: readonly Dim[];
}
export interface SessionSignature {
  inputs: readonly TensorSignature[];
  outputs: readonly TensorSignature[];
}

export type FloatType = "float32" | "float16";

/** What the engine needs to know about the sessions, as checked against config.json. */
export interface SessionContract {
  /** Element type of the decoder's past/present KV tensors. */
  kvType: FloatType;
  /** Element type of inputs_embeds (embed_tokens output and decoder input). */
  embedType: FloatType;
  /** Element type of the vision encoder's pixel_values. */
  pixelType: FloatType;
  /** Element type of the vision encoder's image_features. */
  featureType: FloatType;
  /** Element type of the decoder's logits. */
  logitsType: FloatType;
  /** Width of the embeddings, when a session states it. */
  hiddenSize: number | null;
  /** Vocabulary size from the logits shape, when stated. */
  vocabSize: number | null;
  /** optimum-style merged decoders take a boolean `use_cache_branch` input. */
  useCacheBranch: boolean;
  /** Vision input size [H, W] when stated. */
  imageSize: [number, number] | null;
}

function listNames(sigs: readonly TensorSignature[]): string {
  const names = sigs.map((s) => s.name);
  return names.length <= 12 ? names.join(", ") : `${names.slice(0, 12).join(", ")}, … (${names.length} in all)`;
}

function floatType(dir: string, file: string, sig: TensorSignature, role: string): FloatType {
  if (sig.type === undefined || sig.type === "float32") return "float32";
  if (sig.type === "float16") return "float16";
  throw new ModelFolderError(dir, file, `${role} '${sig.name}' has element type ${sig.type}; expected float32 or float16`);
}

function checkInt64(dir: string, file: string, sig: TensorSignature, role: string): void {
  if (sig.type !== undefined && sig.type !== "int64") {
    throw new ModelFolderError(dir, file, `${role} '${sig.name}' has element type ${sig.type}; expected int64`);
  }
}

function checkRank(dir: string, file: string, sig: TensorSignature, role: string, rank: number, meaning: string): void {
  if (sig.shape !== undefined && sig.shape.length !== rank) {
    throw new ModelFolderError(dir, file, `${role} '${sig.name}' has shape [${sig.shape.join(", ")}]; expected ${meaning}`);
  }
}

function checkDim(dir: string, file: string, sig: TensorSignature, role: string, axis: number, want: number, what: string): void {
  const d = sig.shape?.[axis];
  if (typeof d === "number" && d !== want) {
    throw new ModelFolderError(dir, file, `${role} '${sig.name}' has ${d} at axis ${axis}; expected ${want} (${what})`);
  }
}

const numericDim = (sig: TensorSignature | undefined, axis: number): number | null => {
  const d = sig?.shape?.[axis];
  return typeof d === "number" ? d : null;
};

export const pastKeyName = (layer: number, kind: "key" | "value") => `past_key_values.${layer}.${kind}`;
export const presentName = (layer: number, kind: "key" | "value") => `present.${layer}.${kind}`;

/**
 * Checks the three sessions' inputs and outputs against the contract and config.json, e.g.
 * `decoder_model_merged.onnx: expected input 'position_ids', found inputs_embeds, …`.
 */
export function checkSessionContract(
  dir: string,
  spec: ModelSpec,
  sigs: { vision: SessionSignature; embed: SessionSignature; decoder: SessionSignature },
): SessionContract {
  const find = (file: string, list: readonly TensorSignature[], name: string, io: "input" | "output"): TensorSignature => {
    const sig = list.find((s) => s.name === name);
    if (sig === undefined) throw new ModelFolderError(dir, file, `expected ${io} '${name}', found ${listNames(list)}`);
    return sig;
  };
  const extra = (file: string, list: readonly TensorSignature[], allowed: Set<string>, io: "input" | "output") => {
    const unknown = list.filter((s) => !allowed.has(s.name));
    if (unknown.length > 0 && io === "input") {
      throw new ModelFolderError(
        dir,
        file,
        `unexpected ${io}${unknown.length === 1 ? "" : "s"} ${unknown.map((s) => `'${s.name}'`).join(", ")}; the contract's inputs are ${[...allowed].join(", ")}`,
      );
    }
  };

  // vision_encoder.onnx: pixel_values [B,3,H,W] -> image_features [B,T_img,D]
  const pv = find(VISION_FILE, sigs.vision.inputs, "pixel_values", "input");
  const pixelType = floatType(dir, VISION_FILE, pv, "input");
  checkRank(dir, VISION_FILE, pv, "input", 4, "[batch, 3, height, width]");
  checkDim(dir, VISION_FILE, pv, "input", 1, 3, "RGB channels");
  extra(VISION_FILE, sigs.vision.inputs, new Set(["pixel_values"]), "input");
  const feats = find(VISION_FILE, sigs.vision.outputs, "image_features", "output");
  const featureType = floatType(dir, VISION_FILE, feats, "output");
  checkRank(dir, VISION_FILE, feats, "output", 3, "[batch, image tokens, hidden]");
  checkDim(dir, VISION_FILE, feats, "output", 1, spec.imageSeqLength, "image_seq_length in config.json");

  // embed_tokens.onnx: input_ids [B,T] int64 -> inputs_embeds [B,T,D]
  const ids = find(EMBED_FILE, sigs.embed.inputs, "input_ids", "input");
  checkInt64(dir, EMBED_FILE, ids, "input");
  checkRank(dir, EMBED_FILE, ids, "input", 2, "[batch, sequence]");
  extra(EMBED_FILE, sigs.embed.inputs, new Set(["input_ids"]), "input");
  const embOut = find(EMBED_FILE, sigs.embed.outputs, "inputs_embeds", "output");
  const embedType = floatType(dir, EMBED_FILE, embOut, "output");
  checkRank(dir, EMBED_FILE, embOut, "output", 3, "[batch, sequence, hidden]");

  // decoder_model_merged.onnx
  const allowed = new Set(["inputs_embeds", "attention_mask", "position_ids", "use_cache_branch"]);
  const dEmb = find(DECODER_FILE, sigs.decoder.inputs, "inputs_embeds", "input");
  const decEmbedType = floatType(dir, DECODER_FILE, dEmb, "input");
  if (decEmbedType !== embedType) {
    throw new ModelFolderError(
      dir,
      DECODER_FILE,
      `input 'inputs_embeds' is ${decEmbedType} but ${EMBED_FILE} produces ${embedType}; expected the same type`,
    );
  }
  checkRank(dir, DECODER_FILE, dEmb, "input", 3, "[batch, sequence, hidden]");
  const mask = find(DECODER_FILE, sigs.decoder.inputs, "attention_mask", "input");
  checkInt64(dir, DECODER_FILE, mask, "input");
  checkRank(dir, DECODER_FILE, mask, "input", 2, "[batch, past + sequence]");
  const pos = find(DECODER_FILE, sigs.decoder.inputs, "position_ids", "input");
  checkInt64(dir, DECODER_FILE, pos, "input");
  checkRank(dir, DECODER_FILE, pos, "input", 2, "[batch, sequence]");
  let kvType: FloatType | null = null;
  for (let i = 0; i < spec.numLayers; i++) {
    for (const kind of ["key", "value"] as const) {
      const past = find(DECODER_FILE, sigs.decoder.inputs, pastKeyName(i, kind), "input");
      allowed.add(past.name);
      const t = floatType(dir, DECODER_FILE, past, "input");
      if (kvType !== null && t !== kvType) {
        throw new ModelFolderError(
          dir,
          DECODER_FILE,
          `input '${past.name}' is ${t} but other past_key_values are ${kvType}; expected one KV type`,
        );
      }
      kvType = t;
      checkRank(dir, DECODER_FILE, past, "input", 4, "[batch, kv heads, past, head_dim]");
      checkDim(dir, DECODER_FILE, past, "input", 1, spec.numKvHeads, "num_key_value_heads in config.json");
      checkDim(dir, DECODER_FILE, past, "input", 3, spec.headDim, "head_dim in config.json");
      const present = find(DECODER_FILE, sigs.decoder.outputs, presentName(i, kind), "output");
      if (floatType(dir, DECODER_FILE, present, "output") !== t) {
        throw new ModelFolderError(
          dir,
          DECODER_FILE,
          `output '${present.name}' has a different type from input '${past.name}'; expected ${t}`,
        );
      }
    }
  }
  const extraLayers = sigs.decoder.inputs.filter((s) => /^past_key_values\.\d+\./.test(s.name) && !allowed.has(s.name));
  if (extraLayers.length > 0) {
    throw new ModelFolderError(
      dir,
      DECODER_FILE,
      `has ${extraLayers.map((s) => `'${s.name}'`).join(", ")} beyond num_hidden_layers ${spec.numLayers} in config.json; expected past_key_values.0 … ${spec.numLayers - 1}`,
    );
  }
  extra(DECODER_FILE, sigs.decoder.inputs, allowed, "input");
  const logits = find(DECODER_FILE, sigs.decoder.outputs, "logits", "output");
  const logitsType = floatType(dir, DECODER_FILE, logits, "output");
  checkRank(dir, DECODER_FILE, logits, "output", 3, "[batch, sequence, vocab]");

  const hiddenSize = numericDim(dEmb, 2) ?? numericDim(embOut, 2) ?? numericDim(feats, 2) ?? spec.hiddenSize;
  for (const [file, sig, role] of [
    [VISION_FILE, feats, "output"],
    [EMBED_FILE, embOut, "output"],
    [DECODER_FILE, dEmb, "input"],
  ] as const) {
    if (hiddenSize !== null) checkDim(dir, file, sig, role, 2, hiddenSize, "the embedding width of the other sessions");
  }
  const vocabSize = numericDim(logits, 2) ?? spec.vocabSize;
  if (spec.vocabSize !== null && vocabSize !== null && vocabSize !== spec.vocabSize) {
    throw new ModelFolderError(
      dir,
      DECODER_FILE,
      `output 'logits' has vocabulary ${vocabSize}; expected ${spec.vocabSize} (vocab_size in config.json)`,
    );
  }
  const h = numericDim(pv, 2);
  const w = numericDim(pv, 3);
  return {
    kvType: kvType ?? "float32",
    embedType,
    pixelType,
    featureType,
    logitsType,
    hiddenSize,
    vocabSize,
    useCacheBranch: sigs.decoder.inputs.some((s) => s.name === "use_cache_branch"),
    imageSize: h !== null && w !== null ? [h, w] : null,
  };
}
