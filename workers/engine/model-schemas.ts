/**
 * zod schemas of a model folder's JSON files: only what the engine reads; other fields are
 * kept and ignored. Each error message says what was expected and what was found.
 */
import { z } from "zod";
import type { FamilyName } from "./model-family.ts";

const show = (v: unknown): string => {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};
/** zod error callback: "expected <what>, got <value>" (or "missing; expected <what>"). */
const expected = (what: string) => (iss: { input?: unknown }) =>
  iss.input === undefined ? `missing; expected ${what}` : `expected ${what}, got ${show(iss.input)}`;

export const showValue = show;

const intAtLeast = (min: number) => {
  const what = `an integer >= ${min}`;
  return z
    .number({ error: expected(what) })
    .int({ error: expected(what) })
    .min(min, { error: expected(what) });
};
const positiveNumber = (what = "a number > 0") => z.number({ error: expected(what) }).positive({ error: expected(what) });
const flag = z.boolean({ error: expected("true or false") });
const tokenIds = z.union([intAtLeast(0), z.array(intAtLeast(0)).min(1)], {
  error: expected("a token id or a non-empty list of token ids"),
});

/** config.json, with the text model's fields merged up from `text_config` (LLaVA-style configs). */
export const ModelConfigSchema = z
  .looseObject({
    model_type: z.string().optional(),
    image_token_id: intAtLeast(0),
    image_seq_length: intAtLeast(1).optional(),
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
    cross_attention_layers: z.array(intAtLeast(0), { error: expected("a list of decoder layer indices") }).optional(),
    "transformers.js_config": z.looseObject({ dtype: z.unknown().optional() }).optional(),
  })
  .refine((c) => c.head_dim !== undefined || (c.hidden_size !== undefined && c.num_attention_heads !== undefined), {
    message: "expected head_dim, or hidden_size and num_attention_heads to derive it",
    path: ["head_dim"],
  });

export const GenerationConfigSchema = z.looseObject({
  do_sample: flag.optional(),
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

/** The fields every image processor shares. */
const commonPreprocessing = {
  do_resize: flag.default(true),
  /** PIL resampling filter: 0 nearest, 2 bilinear, 3 bicubic, 1 lanczos. */
  resample: z
    .number({ error: expected("a PIL resample code") })
    .int()
    .default(3),
  do_rescale: flag.default(true),
  rescale_factor: positiveNumber().default(1 / 255),
  do_normalize: flag.default(true),
  image_mean: channelValues("image_mean").default([0.5, 0.5, 0.5]),
  image_std: channelValues("image_std")
    .refine((v) => (Array.isArray(v) ? v : [v]).every((x) => x !== 0), { message: "expected non-zero std values" })
    .default([0.5, 0.5, 0.5]),
  do_convert_rgb: flag.default(true),
};

const heightWidth = z.object({ height: intAtLeast(1), width: intAtLeast(1) }, { error: expected("{ height, width } in pixels") });
const longestEdge = z.looseObject({ longest_edge: intAtLeast(1) }, { error: expected("{ longest_edge } in pixels") });

/** The bundled model: one fixed resize. */
const FixedSizePreprocessor = z.looseObject({
  ...commonPreprocessing,
  size: z.union([intAtLeast(1), heightWidth], { error: expected("{ height, width } in pixels (or one number for a square)") }),
});

/** CLIP-style (LLaVA): resize the shortest edge, then center-crop. */
const ClipPreprocessor = z.looseObject({
  ...commonPreprocessing,
  size: z.union([z.looseObject({ shortest_edge: intAtLeast(1) }), heightWidth], {
    error: expected("{ shortest_edge } or { height, width } in pixels"),
  }),
  crop_size: heightWidth.optional(),
});

/** Idefics3 / SmolVLM: longest edge, then tiles of max_image_size. */
const TilingPreprocessor = z.looseObject({
  ...commonPreprocessing,
  size: longestEdge,
  max_image_size: longestEdge,
  do_image_splitting: flag.optional(),
});

/** Qwen2-VL: a pixel budget, patches merged in windows. */
const PatchGridPreprocessor = z
  .looseObject({
    ...commonPreprocessing,
    patch_size: intAtLeast(1),
    merge_size: intAtLeast(1),
    temporal_patch_size: intAtLeast(1),
    min_pixels: intAtLeast(1).optional(),
    max_pixels: intAtLeast(1).optional(),
    size: z.looseObject({ shortest_edge: intAtLeast(1).optional(), longest_edge: intAtLeast(1).optional() }).optional(),
  })
  .refine((p) => (p.min_pixels ?? p.size?.shortest_edge) !== undefined && (p.max_pixels ?? p.size?.longest_edge) !== undefined, {
    message: "missing; expected min_pixels and max_pixels (or size.shortest_edge and size.longest_edge)",
    path: ["max_pixels"],
  })
  .refine((p) => (p.min_pixels ?? p.size?.shortest_edge ?? 0) <= (p.max_pixels ?? p.size?.longest_edge ?? Infinity), {
    message: "expected max_pixels >= min_pixels",
    path: ["max_pixels"],
  });

/** Llama-3.2-Vision (mllama): up to max_image_tiles square tiles of size.height. */
const MllamaPreprocessor = z.looseObject({
  ...commonPreprocessing,
  resample: z
    .number({ error: expected("a PIL resample code") })
    .int()
    .default(2),
  size: heightWidth.refine((s) => s.height === s.width, { message: "expected square tiles (height = width)" }),
  max_image_tiles: intAtLeast(1).default(4),
  do_pad: flag.default(true),
});

export type MllamaPreprocessorConfig = z.output<typeof MllamaPreprocessor>;
export const mllamaPreprocessor = (raw: Record<string, unknown>): MllamaPreprocessorConfig => MllamaPreprocessor.parse(raw);

export const PREPROCESSOR_SCHEMAS: Record<FamilyName, z.ZodType<Record<string, unknown>>> = {
  "stagebeam-tiny": FixedSizePreprocessor,
  llava: ClipPreprocessor,
  mllama: MllamaPreprocessor,
  idefics3: TilingPreprocessor,
  smolvlm: TilingPreprocessor,
  qwen2_vl: PatchGridPreprocessor,
  qwen2_5_vl: PatchGridPreprocessor,
};

/** The bundled model's preprocessor_config.json, as read for its fixed resize. */
export type FixedSizePreprocessorConfig = z.output<typeof FixedSizePreprocessor>;
export const fixedSizePreprocessor = (raw: Record<string, unknown>): FixedSizePreprocessorConfig =>
  FixedSizePreprocessor.parse(raw);

const tokenString = z.union([z.string(), z.object({ content: z.string() })], {
  error: expected('a token string such as "<bos>"'),
});

export const ProcessorConfigSchema = z.looseObject({
  image_seq_len: intAtLeast(1).optional(),
  image_token: tokenString.optional(),
  patch_size: intAtLeast(1).optional(),
  num_additional_image_tokens: intAtLeast(0).optional(),
});

export const chatTemplateValue = z.union(
  [z.string().min(1), z.array(z.object({ name: z.string(), template: z.string() })).min(1)],
  { error: expected("a jinja chat template string") },
);

export const ChatTemplateJsonSchema = z.looseObject({ chat_template: chatTemplateValue });

export const TokenizerConfigSchema = z.looseObject({
  chat_template: chatTemplateValue.optional(),
  bos_token: tokenString.nullable().optional(),
  eos_token: tokenString.nullable().optional(),
  pad_token: tokenString.nullable().optional(),
  image_token: tokenString.optional(),
  model_max_length: z.number().optional(),
});

export const TokenizerJsonSchema = z.looseObject({
  model: z.looseObject({ type: z.string().optional() }, { error: expected("a tokenizer model object") }),
  added_tokens: z.array(z.looseObject({ id: z.number(), content: z.string() })).optional(),
});

export const tokenText = (v: string | { content: string } | null | undefined): string | null =>
  v === undefined || v === null ? null : typeof v === "string" ? v : v.content;
