/**
 * The environment variables stagebeam reads: one spec each (name, parts that read it, meaning,
 * default, what is expected, the zod schema that checks and converts it). The specs are the
 * single source of truth: `config.ts` validates with them and `configTableMarkdown()` renders
 * the README's table from them, so the documentation cannot drift from the code.
 */
import { z } from "zod";
import type { ConfigPart } from "./config.ts";

export const EXECUTION_PROVIDERS = ["cuda", "webgpu", "cpu"] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The ONNX weight formats of a published export, as transformers.js names them (each has its own file suffix). */
export const MODEL_DTYPES = ["fp32", "fp16", "q8", "int8", "uint8", "q4", "q4f16", "bnb4"] as const;
export type ModelDtype = (typeof MODEL_DTYPES)[number];

/**
 * MODEL_DTYPE: one dtype for every session, and/or one per session file name
 * (`vision_encoder=fp16,decoder_model_merged=q4`). Sessions it does not name take the folder's
 * own default (config.json `transformers.js_config.dtype`), else fp32.
 */
export interface DtypeSetting {
  all?: ModelDtype;
  sessions: Record<string, ModelDtype>;
}

/** The bundled model folder, relative to the repository. */
export const BUNDLED_MODEL = "models/stagebeam-tiny";

/** The bundled process verifier, trained for the bundled model, relative to the repository: the default verifier folder. */
export const BUNDLED_VERIFIER = "models/stagebeam-tiny-prm";

/** What a fleet worker holds: the policy (generate and judge jobs), the verifier (verify jobs), or both. */
export const WORKER_MODELS = ["policy", "verifier"] as const;
export type WorkerModel = (typeof WORKER_MODELS)[number];

// ---------------------------------------------------------------------------
// Variable specs (the single source of truth for validation and documentation)

export interface VarSpec {
  name: string;
  parts: readonly ConfigPart[];
  meaning: string;
  /** The value used when the variable is unset, written as in the environment (the docs table shows it as it is). */
  default?: string;
  /** For the docs table when there is no default value: what happens when the variable is unset (else "required"). */
  whenUnset?: string;
  expected: string;
  /** Never echo the value in errors. */
  secret?: boolean;
  /** Validates and converts a present, non-empty, trimmed value. */
  schema: z.ZodType<unknown, string>;
}

const uint = (min: number, max: number) => z.string().regex(/^\d+$/).transform(Number).pipe(z.number().int().min(min).max(max));

const redisUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === "redis:" || u.protocol === "rediss:") && u.hostname !== "";
  } catch {
    return false;
  }
});

const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
  } catch {
    return false;
  }
});

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

const boolFlag = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(z.enum(["true", "false", "1", "0", "yes", "no"]))
  .transform((s) => s === "true" || s === "1" || s === "yes");

const s3Uri = z
  .string()
  .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/)
  .transform((uri) => {
    const rest = uri.slice("s3://".length);
    const slash = rest.indexOf("/");
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    let prefix = slash < 0 ? "" : rest.slice(slash + 1);
    if (prefix !== "" && !prefix.endsWith("/")) prefix += "/";
    return { uri, bucket, prefix };
  });

const digest = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(z.string().regex(/^(sha256:)?[0-9a-f]{64}$/))
  .transform((s) => (s.startsWith("sha256:") ? s : `sha256:${s}`));

const workerModels = z.string().transform((s, ctx) => {
  const out: WorkerModel[] = [];
  for (const raw of s.split(",")) {
    const m = raw.trim().toLowerCase();
    if (!(WORKER_MODELS as readonly string[]).includes(m)) {
      ctx.addIssue({ code: "custom", message: `unknown model "${m}"` });
      return z.NEVER;
    }
    if (!out.includes(m as WorkerModel)) out.push(m as WorkerModel);
  }
  return out;
});

const providers = z.string().transform((s, ctx) => {
  const out: ExecutionProvider[] = [];
  for (const raw of s.split(",")) {
    const p = raw.trim().toLowerCase();
    if (!(EXECUTION_PROVIDERS as readonly string[]).includes(p)) {
      ctx.addIssue({ code: "custom", message: `unknown provider "${p}"` });
      return z.NEVER;
    }
    if (!out.includes(p as ExecutionProvider)) out.push(p as ExecutionProvider);
  }
  return out;
});

const isDtype = (s: string): s is ModelDtype => (MODEL_DTYPES as readonly string[]).includes(s);

/** `q4`, `vision_encoder=fp16,decoder_model_merged=q4`, or both (`q4,vision_encoder=fp16`). */
export function parseDtypeSetting(text: string): DtypeSetting | string {
  const setting: DtypeSetting = { sessions: {} };
  for (const raw of text.split(",")) {
    const part = raw.trim().toLowerCase();
    const eq = part.indexOf("=");
    const value = eq < 0 ? part : part.slice(eq + 1).trim();
    if (!isDtype(value)) return `unknown dtype "${value}"`;
    if (eq < 0) {
      if (setting.all !== undefined) return "more than one dtype for all sessions";
      setting.all = value;
      continue;
    }
    const session = part.slice(0, eq).trim();
    if (!/^[a-z][a-z0-9_]*$/.test(session)) return `"${session}" is not a session file name`;
    if (setting.sessions[session] !== undefined) return `two dtypes for ${session}`;
    setting.sessions[session] = value;
  }
  return setting;
}

const dtypeSetting = z.string().transform((s, ctx) => {
  const parsed = parseDtypeSetting(s);
  if (typeof parsed === "string") {
    ctx.addIssue({ code: "custom", message: parsed });
    return z.NEVER;
  }
  return parsed;
});

const SPECS = [
  {
    name: "REDIS_URL",
    parts: ["redis"],
    meaning: "Redis holding the BullMQ queues (run it with AOF and `maxmemory-policy noeviction`).",
    expected: "a redis:// or rediss:// URL such as redis://127.0.0.1:6379",
    schema: redisUrl,
  },
  {
    name: "REDIS_CLUSTER",
    parts: ["redis"],
    meaning:
      "`REDIS_URL` names one node of a Redis Cluster: the fleet finds the others from it (one queue prefix lives on one node; give runs different prefixes to spread them).",
    default: "false",
    expected: "true or false (also 1/0, yes/no)",
    schema: boolFlag,
  },
  {
    name: "QUEUE_PREFIX",
    parts: ["redis"],
    meaning:
      "BullMQ key prefix shared by every queue of a flow; must hold a Redis Cluster hash tag so all keys land in one slot.",
    default: "{sb}",
    expected: "a key prefix containing a hash tag such as {sb}, without spaces",
    schema: z.string().regex(/^[^\s{}]*\{[^\s{}]+\}[^\s{}]*$/),
  },
  {
    name: "S3_ENDPOINT",
    parts: ["s3"],
    meaning: "S3-compatible endpoint (MinIO, s3rver). Unset: real AWS S3.",
    whenUnset: "AWS S3",
    expected: "an http:// or https:// URL such as http://127.0.0.1:4568",
    schema: httpUrl,
  },
  {
    name: "S3_BUCKET",
    parts: ["s3"],
    meaning: "Bucket for staged images, results, failure records and run manifests.",
    expected: "an S3 bucket name: 3-63 characters of a-z, 0-9, '.', '-'",
    schema: z.string().regex(BUCKET_RE),
  },
  {
    name: "S3_REGION",
    parts: ["s3"],
    meaning: "Region of the bucket.",
    default: "us-east-1",
    expected: "a region name such as us-east-1",
    schema: z.string().regex(/^[a-z0-9-]+$/),
  },
  {
    name: "S3_ACCESS_KEY_ID",
    parts: ["s3"],
    meaning:
      "Access key. Unset: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or the rest of the AWS SDK's default chain (web identity/IRSA, profiles, instance and task roles), with AWS S3 or a custom `S3_ENDPOINT` alike.",
    whenUnset: "AWS default chain",
    expected: "an access key id (set together with S3_SECRET_ACCESS_KEY)",
    schema: z.string().min(1),
  },
  {
    name: "S3_SECRET_ACCESS_KEY",
    parts: ["s3"],
    meaning: "Secret key matching `S3_ACCESS_KEY_ID`.",
    whenUnset: "AWS default chain",
    expected: "a secret access key (set together with S3_ACCESS_KEY_ID)",
    secret: true,
    schema: z.string().min(1),
  },
  {
    name: "AWS_ACCESS_KEY_ID",
    parts: ["s3"],
    meaning: "Standard AWS access key, used when `S3_ACCESS_KEY_ID` is unset.",
    whenUnset: "—",
    expected: "an access key id (set together with AWS_SECRET_ACCESS_KEY)",
    schema: z.string().min(1),
  },
  {
    name: "AWS_SECRET_ACCESS_KEY",
    parts: ["s3"],
    meaning: "Standard AWS secret key, used when `S3_SECRET_ACCESS_KEY` is unset.",
    whenUnset: "—",
    expected: "a secret access key (set together with AWS_ACCESS_KEY_ID)",
    secret: true,
    schema: z.string().min(1),
  },
  {
    name: "S3_FORCE_PATH_STYLE",
    parts: ["s3"],
    meaning:
      "Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key` (needed by s3rver and most MinIO setups).",
    whenUnset: "`true` with `S3_ENDPOINT`, else `false`",
    expected: "true or false (also 1/0, yes/no)",
    schema: boolFlag,
  },
  {
    name: "MODEL_DIR",
    parts: ["model"],
    meaning: "Local model folder (ONNX files, config, tokenizer). Exclusive with `MODEL_URI`.",
    whenUnset: `bundled \`${BUNDLED_MODEL}\``,
    expected: "a path to a model folder",
    schema: z.string().min(1),
  },
  {
    name: "MODEL_URI",
    parts: ["model"],
    meaning: "S3 prefix of a model folder that the worker downloads and verifies on start. Exclusive with `MODEL_DIR`.",
    whenUnset: "—",
    expected: "an s3://bucket/prefix URI",
    schema: s3Uri,
  },
  {
    name: "MODEL_CACHE_DIR",
    parts: ["model"],
    meaning:
      "Where a worker keeps the folders it downloads from `MODEL_URI`; a complete, matching folder found there is used without downloading.",
    whenUnset: "`~/.cache/stagebeam/models`",
    expected: "a path to a writable folder",
    schema: z.string().min(1),
  },
  {
    name: "MODEL_DIGEST",
    parts: ["model"],
    meaning: "Expected digest of the model; the worker refuses a model that does not match.",
    whenUnset: "not checked",
    expected: "sha256:<64 hex digits> (or the 64 hex digits alone)",
    schema: digest,
  },
  {
    name: "MODEL_DTYPE",
    parts: ["model"],
    meaning:
      "Which ONNX files of a published export to load: one dtype for all sessions, or per session (`vision_encoder=fp16,decoder_model_merged=q4`).",
    whenUnset: "config.json `transformers.js_config.dtype`, else `fp32`",
    expected: `one of ${MODEL_DTYPES.join(", ")}, or session=dtype pairs separated by commas`,
    schema: dtypeSetting,
  },
  {
    name: "VERIFIER_MODEL_DIR",
    parts: ["verifier"],
    meaning:
      "Local process-verifier folder (a model folder with `verifier.json`), for judge mode `verifier` and swires. Exclusive with `VERIFIER_MODEL_URI`.",
    whenUnset: "the bundled verifier `models/stagebeam-tiny-prm` when present",
    expected: "a path to a verifier folder",
    schema: z.string().min(1),
  },
  {
    name: "VERIFIER_MODEL_URI",
    parts: ["verifier"],
    meaning:
      "S3 prefix of a verifier folder that a worker holding the verifier downloads and checks on start. Exclusive with `VERIFIER_MODEL_DIR`.",
    whenUnset: "—",
    expected: "an s3://bucket/prefix URI",
    schema: s3Uri,
  },
  {
    name: "VERIFIER_MODEL_DIGEST",
    parts: ["verifier"],
    meaning: "Expected digest of the verifier (its model files and `verifier.json`); a worker refuses one that does not match.",
    whenUnset: "not checked",
    expected: "sha256:<64 hex digits> (or the 64 hex digits alone)",
    schema: digest,
  },
  {
    name: "WORKER_MODELS",
    parts: ["verifier"],
    meaning:
      "What a worker holds and serves: `policy` (generate and judge jobs), `verifier` (verify jobs), or both, so verifier workers scale apart from policy workers.",
    default: "policy",
    expected: `a comma-separated list of ${WORKER_MODELS.join(", ")}`,
    schema: workerModels,
  },
  {
    name: "WORKER_CONCURRENCY",
    parts: ["worker"],
    meaning: "Jobs one worker process runs at once (concurrent candidates batch into one decoder call).",
    default: "4",
    expected: "an integer from 1 to 1024",
    schema: uint(1, 1024),
  },
  {
    name: "WORKER_RETRY_BUDGET_SECONDS",
    parts: ["worker"],
    meaning:
      "How long a job keeps retrying S3 and Redis errors and dead workers (capped exponential backoff, 1 s doubling to 30 s) before its item fails for good.",
    default: "600",
    expected: "an integer from 0 to 86400",
    schema: uint(0, 86_400),
  },
  {
    name: "WORKER_REDIS_GIVE_UP_SECONDS",
    parts: ["worker"],
    meaning:
      "A worker exits with status 1 when Redis has not answered for this long (a wrong URL, a deleted instance); `0` waits forever.",
    default: "300",
    expected: "an integer from 0 to 86400",
    schema: uint(0, 86_400),
  },
  {
    name: "STAGEBEAM_STOP_ON_STDIN_EOF",
    parts: ["worker"],
    meaning:
      "Stop the worker gracefully when its stdin closes; set by a supervisor that holds the stdin (`stagebeam demo`), so its workers end with it.",
    default: "false",
    expected: "true or false (also 1/0, yes/no)",
    schema: boolFlag,
  },
  {
    name: "EXECUTION_PROVIDERS",
    parts: ["engine"],
    meaning: "ONNX Runtime execution providers in order of preference, comma separated.",
    default: "cpu",
    expected: `a comma-separated list of ${EXECUTION_PROVIDERS.join(", ")}`,
    schema: providers,
  },
  {
    name: "KV_BUDGET_MB",
    parts: ["engine"],
    meaning:
      "Most KV cache an engine holds at once (prefix caches, sequences, a decode step's past and present), in MiB: on a device provider the GPU memory the KV may take; decode batches admit sequences only while they fit.",
    whenUnset: "no limit",
    expected: "an integer from 1 to 16777216",
    schema: uint(1, 16777216),
  },
  {
    name: "ORT_INTRA_OP_THREADS",
    parts: ["engine"],
    meaning: "ONNX Runtime intra-op thread count.",
    whenUnset: "ONNX Runtime's choice",
    expected: "an integer from 1 to 1024",
    schema: uint(1, 1024),
  },
  {
    name: "METRICS_PORT",
    parts: ["metrics"],
    meaning: "Port of the Prometheus `/metrics` endpoint; `0` picks a free port.",
    default: "9464",
    expected: "an integer from 0 to 65535",
    schema: uint(0, 65535),
  },
  {
    name: "DASHBOARD_PORT",
    parts: ["dashboard"],
    meaning: "Port of `stagebeam dashboard` (runs, result viewer, bull-board, `/healthz`); `0` picks a free port.",
    default: "8080",
    expected: "an integer from 0 to 65535",
    schema: uint(0, 65535),
  },
  {
    name: "DASHBOARD_TOKEN",
    parts: ["dashboard"],
    meaning:
      "Bearer token for the dashboard's actions (retry a failed job, clean finished jobs). Unset: the dashboard is read-only and refuses every action.",
    whenUnset: "read-only",
    expected: "a token of 16 to 512 characters without spaces",
    secret: true,
    schema: z.string().regex(/^\S{16,512}$/),
  },
  {
    name: "LOG_LEVEL",
    parts: ["logging"],
    meaning: "pino log level (logs are JSON lines on stderr).",
    default: "info",
    expected: `one of ${LOG_LEVELS.join(", ")}`,
    schema: z
      .string()
      .transform((s) => s.toLowerCase())
      .pipe(z.enum(LOG_LEVELS)),
  },
] as const satisfies readonly VarSpec[];

export type ConfigVariable = (typeof SPECS)[number]["name"];
/** Settings for a child process's environment, with the names checked against the specs. */
export type ConfigEnv = Partial<Record<ConfigVariable, string>>;

const SPEC_BY_NAME = new Map<string, VarSpec>(SPECS.map((s) => [s.name, s]));

export function specOf(name: ConfigVariable): VarSpec {
  return SPEC_BY_NAME.get(name)!;
}

/** Names of every variable this module reads. */
export const CONFIG_VARIABLES: readonly string[] = SPECS.map((s) => s.name);

// ---------------------------------------------------------------------------
// Documentation

/** The docs table's Default column: the default value itself, else what happens when unset. */
function defaultCell(spec: VarSpec): string {
  if (spec.default !== undefined) return `\`${spec.default}\``;
  return spec.whenUnset ?? "required";
}

/** Markdown table of every variable: name, default, which parts read it, meaning. */
export function configTableMarkdown(): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const rows = (SPECS as readonly VarSpec[]).map(
    (s) => `| \`${s.name}\` | ${esc(defaultCell(s))} | ${s.parts.join(", ")} | ${esc(s.meaning)} |`,
  );
  return `${["| Variable | Default | Used by | Meaning |", "|---|---|---|---|", ...rows].join("\n")}\n`;
}
