/**
 * The files of a model folder, by name, and which ONNX file each session loads: the layout
 * transformers.js 4.3 reads (`src/models/session.js`, `src/utils/model-loader.js`,
 * `src/utils/dtypes.js`). A session file `<session><suffix>.onnx` lies in `onnx/` when the
 * folder has that subfolder (transformers.js's default), else at the root (the bundled model);
 * the suffix comes from the dtype. External data (`<file>_data`, `<file>_data_1`, …) stays
 * beside its file, where ONNX Runtime opens it by the name the graph records when the session is
 * created from the file's path (checked with onnxruntime-node 1.30).
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { MODEL_DTYPES, type DtypeSetting, type ModelDtype } from "../../shared/io/config.ts";
import { ModelFolderError } from "./errors.ts";

export const SESSION_NAMES = ["vision_encoder", "embed_tokens", "decoder_model_merged"] as const;
export type SessionName = (typeof SESSION_NAMES)[number];

/** The session files as the bundled model names them (fp32, at the root). */
export const VISION_FILE = "vision_encoder.onnx";
export const EMBED_FILE = "embed_tokens.onnx";
export const DECODER_FILE = "decoder_model_merged.onnx";
export const JUDGE_TEMPLATES_FILE = "judge_templates.json";
export const PROCESSOR_CONFIG_FILE = "processor_config.json";
/** Where a chat template may be, in the order Python's processors prefer them. */
export const CHAT_TEMPLATE_FILES = ["chat_template.jinja", "chat_template.json", "tokenizer_config.json"] as const;
/** The subfolder transformers.js reads session files from unless told otherwise. */
export const ONNX_SUBFOLDER = "onnx";

export const JSON_FILES = [
  "config.json",
  "generation_config.json",
  "preprocessor_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
] as const;

/** What every model folder holds (the bundled model's names for the session files). */
export const REQUIRED_FILES = [VISION_FILE, EMBED_FILE, DECODER_FILE, ...JSON_FILES] as const;

export const DTYPE_SUFFIX: Record<ModelDtype, string> = {
  fp32: "",
  fp16: "_fp16",
  q8: "_quantized",
  int8: "_int8",
  uint8: "_uint8",
  q4: "_q4",
  q4f16: "_q4f16",
  bnb4: "_bnb4",
};

export interface SessionFile {
  session: SessionName;
  dtype: ModelDtype;
  /** Path relative to the folder, e.g. `onnx/decoder_model_merged_q4.onnx`. */
  file: string;
  /** Its external data files, relative to the folder, in chunk order. */
  externalData: string[];
}

export type SessionFiles = Record<SessionName, SessionFile>;

const isDtype = (v: unknown): v is ModelDtype => typeof v === "string" && (MODEL_DTYPES as readonly string[]).includes(v);

/**
 * The dtype each session loads: MODEL_DTYPE's entry for the session, else its value for all
 * sessions, else config.json's `transformers.js_config.dtype` (one value or one per session),
 * else fp32.
 */
export function sessionDtypes(
  dir: string,
  setting: DtypeSetting | undefined,
  folderDefault: unknown,
): Record<SessionName, ModelDtype> {
  for (const name of Object.keys(setting?.sessions ?? {})) {
    if (!(SESSION_NAMES as readonly string[]).includes(name)) {
      throw new ModelFolderError(dir, null, `MODEL_DTYPE names session "${name}"; the sessions are ${SESSION_NAMES.join(", ")}`);
    }
  }
  const fromFolder = (session: SessionName): ModelDtype | undefined => {
    const v =
      typeof folderDefault === "object" && folderDefault !== null
        ? (folderDefault as Record<string, unknown>)[session]
        : folderDefault;
    if (v === undefined || v === null || v === "auto") return undefined;
    if (!isDtype(v)) {
      throw new ModelFolderError(
        dir,
        "config.json",
        `transformers.js_config.dtype${typeof folderDefault === "object" ? `.${session}` : ""}: expected one of ${MODEL_DTYPES.join(", ")}, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  return Object.fromEntries(
    SESSION_NAMES.map((s) => [s, setting?.sessions[s] ?? setting?.all ?? fromFolder(s) ?? "fp32"]),
  ) as Record<SessionName, ModelDtype>;
}

/**
 * The same error naming the session file the folder actually has (`onnx/decoder_model_merged_q4.onnx`)
 * where it names the bundled model's file name (`decoder_model_merged.onnx`).
 */
export function atSessionFile(err: unknown, files: SessionFiles): unknown {
  if (!(err instanceof ModelFolderError)) return err;
  const session = SESSION_NAMES.find((s) => err.file === `${s}.onnx`);
  if (session === undefined || files[session].file === err.file) return err;
  return new ModelFolderError(err.dir, files[session].file, err.problem);
}

/** The dtypes whose file for `session` is among `entries`. */
function dtypesOffered(entries: readonly string[], session: SessionName): ModelDtype[] {
  return MODEL_DTYPES.filter((d) => entries.includes(`${session}${DTYPE_SUFFIX[d]}.onnx`));
}

const externalDataOf = (entries: readonly string[], file: string): string[] => {
  const chunk = (name: string): number | null => {
    if (name === `${file}_data` || name === `${file}.data`) return 0;
    const m = name.startsWith(`${file}_data_`) ? /^\d+$/.exec(name.slice(file.length + "_data_".length)) : null;
    return m === null ? null : Number(m[0]);
  };
  return entries
    .map((name) => ({ name, n: chunk(name) }))
    .filter((e): e is { name: string; n: number } => e.n !== null)
    .sort((a, b) => a.n - b.n)
    .map((e) => e.name);
};

/**
 * The file of each session for the chosen dtypes, e.g. `onnx/decoder_model_merged_q4.onnx`. A
 * missing one is named with what the folder offers instead: "onnx/decoder_model_merged_q4.onnx
 * not found; the folder has dtypes fp32, fp16 for decoder_model_merged".
 */
export async function resolveSessionFiles(
  dir: string,
  rootEntries: readonly string[],
  dtypes: Record<SessionName, ModelDtype>,
): Promise<SessionFiles> {
  const inSubfolder = rootEntries.includes(ONNX_SUBFOLDER);
  const entries = inSubfolder ? await readdir(path.join(dir, ONNX_SUBFOLDER)) : rootEntries;
  const at = (name: string) => (inSubfolder ? `${ONNX_SUBFOLDER}/${name}` : name);
  const files = {} as SessionFiles;
  for (const session of SESSION_NAMES) {
    const dtype = dtypes[session];
    const name = `${session}${DTYPE_SUFFIX[dtype]}.onnx`;
    if (!entries.includes(name)) {
      const offered = dtypesOffered(entries, session);
      const has =
        offered.length > 0
          ? `the folder has dtypes ${offered.join(", ")} for ${session}`
          : `the folder has no ${session} file (${session}<suffix>.onnx) ${inSubfolder ? `in ${ONNX_SUBFOLDER}/` : "at its root or in onnx/"}`;
      const checkpoint = rootEntries.some((f) => f.endsWith(".safetensors"))
        ? `; the folder holds safetensors weights (a Hugging Face checkpoint): make an ONNX model folder from it with \`stagebeam model export ${dir} --out ${dir}-onnx\` (mllama; models/export/README.md)`
        : "";
      throw new ModelFolderError(dir, at(name), `not found (dtype ${dtype}); ${has}${checkpoint}`);
    }
    files[session] = { session, dtype, file: at(name), externalData: externalDataOf(entries, name).map(at) };
  }
  return files;
}
