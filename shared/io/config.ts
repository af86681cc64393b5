/**
 * Deployment configuration: the environment variables every stagebeam process reads,
 * validated with zod at start.
 *
 * `loadConfig(env, needs)` validates only the parts a subcommand needs (a `submit` needs
 * Redis and S3 but no model; `ask` needs a model but no Redis) and throws one
 * `ConfigError` that lists every bad or missing variable with what was expected.
 * `configTableMarkdown()` renders the variable table for the README from the same specs,
 * so the documentation cannot drift from the code.
 */
import { fileURLToPath } from "node:url";
import { z } from "zod";

// ---------------------------------------------------------------------------
// Public types

export const EXECUTION_PROVIDERS = ["cuda", "webgpu", "cpu"] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface RedisConfig {
  /** redis:// or rediss:// URL. */
  url: string;
  /** BullMQ key prefix shared by all queues of a flow; always holds a hash tag like `{sb}`. */
  queuePrefix: string;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface S3Config {
  /** Custom endpoint (MinIO, s3rver); undefined means real AWS S3. */
  endpoint?: string;
  bucket: string;
  region: string;
  /** Explicit credentials; undefined means the AWS SDK's default provider chain. */
  credentials?: S3Credentials;
  forcePathStyle: boolean;
}

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

interface ModelSource {
  digest?: string;
  dtype?: DtypeSetting;
}
export type ModelConfig =
  | ({ source: "dir"; dir: string } & ModelSource)
  | ({ source: "s3"; uri: string; bucket: string; prefix: string } & ModelSource);

export interface WorkerConfig {
  concurrency: number;
  /** Stop gracefully when stdin closes: a supervisor holding the worker's stdin ends it by closing it, or by dying. */
  stopOnStdinEof: boolean;
}

export interface EngineConfig {
  executionProviders: ExecutionProvider[];
  intraOpThreads?: number;
}

export interface MetricsConfig {
  /** Port of the /metrics server; 0 asks the OS for a free one. */
  port: number;
  /** METRICS_PORT was set: `submit` serves /metrics only then, a worker always does. */
  requested: boolean;
}

export interface LoggingConfig {
  level: LogLevel;
  /** LOG_LEVEL was set: the interactive commands (`ask`, `eval`) log only warnings otherwise. */
  requested: boolean;
}

export interface Config {
  redis: RedisConfig;
  s3: S3Config;
  model: ModelConfig;
  worker: WorkerConfig;
  engine: EngineConfig;
  metrics: MetricsConfig;
  logging: LoggingConfig;
}

export type ConfigPart = keyof Config;
export const CONFIG_PARTS: readonly ConfigPart[] = ["redis", "s3", "model", "worker", "engine", "metrics", "logging"];

export type Env = Readonly<Record<string, string | undefined>>;

const BUNDLED_MODEL = "models/stagebeam-tiny";
/** The bundled model folder, used when neither MODEL_DIR nor MODEL_URI is set. */
export const BUNDLED_MODEL_DIR = fileURLToPath(new URL(`../../${BUNDLED_MODEL}`, import.meta.url));

// ---------------------------------------------------------------------------
// Errors

export interface ConfigIssue {
  variable: string;
  /** "missing", 'got "abc"', or a sentence for cross-variable problems. */
  problem: string;
  expected: string;
}

export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    const lines = issues.map((i) => `  ${i.variable}: ${i.problem}; expected ${i.expected}`);
    super(`Invalid configuration (${issues.length} problem${issues.length === 1 ? "" : "s"}):\n${lines.join("\n")}`);
    this.name = "ConfigError";
    this.issues = issues;
  }
}

// ---------------------------------------------------------------------------
// Variable specs (the single source of truth for validation and documentation)

interface VarSpec {
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
      "Access key. Unset: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or the rest of the AWS SDK's default chain (profiles, IAM roles).",
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
    name: "WORKER_CONCURRENCY",
    parts: ["worker"],
    meaning: "Jobs one worker process runs at once (concurrent candidates batch into one decoder call).",
    default: "4",
    expected: "an integer from 1 to 1024",
    schema: uint(1, 1024),
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

/** Names of every variable this module reads. */
export const CONFIG_VARIABLES: readonly string[] = SPECS.map((s) => s.name);

// ---------------------------------------------------------------------------
// Loading

function redactUrl(value: string): string {
  // scheme://user:password@host → scheme://user:***@host, without reformatting the rest.
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*:)[^/@]*@/i, "$1***@");
}

function shown(spec: VarSpec, raw: string): string {
  if (spec.secret) return "(a value, hidden)";
  const v = redactUrl(raw);
  return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
}

function specOf(name: ConfigVariable): VarSpec {
  return SPEC_BY_NAME.get(name)!;
}

class Reader {
  readonly issues: ConfigIssue[] = [];
  constructor(private readonly env: Env) {}

  raw(name: ConfigVariable): string | undefined {
    const v = this.env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  }

  /** Parsed value, or undefined when unset. Records an issue when present but invalid. */
  opt<T>(name: ConfigVariable): T | undefined {
    const spec = specOf(name);
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    const r = spec.schema.safeParse(raw);
    if (!r.success) {
      this.issues.push({ variable: name, problem: `got ${shown(spec, raw)}`, expected: spec.expected });
      return undefined;
    }
    return r.data as T;
  }

  /** Parsed value, else the spec's default (also after recording an invalid value's issue). */
  orDefault<T>(name: ConfigVariable): T {
    const fallback = specOf(name).default;
    if (fallback === undefined) throw new Error(`config: ${name} has no default`);
    return this.opt<T>(name) ?? (specOf(name).schema.parse(fallback) as T);
  }

  req<T>(name: ConfigVariable): T | undefined {
    const spec = specOf(name);
    if (this.raw(name) === undefined) {
      this.issues.push({ variable: name, problem: "missing", expected: spec.expected });
      return undefined;
    }
    return this.opt<T>(name);
  }

  issue(variable: string, problem: string, expected: string): void {
    this.issues.push({ variable, problem, expected });
  }
}

function readRedis(r: Reader): RedisConfig {
  return {
    url: r.req<string>("REDIS_URL") ?? "",
    queuePrefix: r.orDefault<string>("QUEUE_PREFIX"),
  };
}

function credentialPair(r: Reader, idVar: ConfigVariable, secretVar: ConfigVariable): S3Credentials | undefined {
  const id = r.opt<string>(idVar);
  const secret = r.opt<string>(secretVar);
  const idSet = r.raw(idVar) !== undefined;
  const secretSet = r.raw(secretVar) !== undefined;
  if (idSet !== secretSet) {
    const missing = idSet ? secretVar : idVar;
    r.issue(missing, `missing while ${idSet ? idVar : secretVar} is set`, `${idVar} and ${secretVar} set together`);
    return undefined;
  }
  return id !== undefined && secret !== undefined ? { accessKeyId: id, secretAccessKey: secret } : undefined;
}

function readS3(r: Reader): S3Config {
  const endpoint = r.opt<string>("S3_ENDPOINT");
  const bucket = r.req<string>("S3_BUCKET") ?? "";
  const region = r.orDefault<string>("S3_REGION");
  const forced = r.opt<boolean>("S3_FORCE_PATH_STYLE");
  const anyS3 = r.raw("S3_ACCESS_KEY_ID") !== undefined || r.raw("S3_SECRET_ACCESS_KEY") !== undefined;
  const credentials = anyS3
    ? credentialPair(r, "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
    : credentialPair(r, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY");
  const anyAws = r.raw("AWS_ACCESS_KEY_ID") !== undefined || r.raw("AWS_SECRET_ACCESS_KEY") !== undefined;
  if (r.raw("S3_ENDPOINT") !== undefined && !anyS3 && !anyAws) {
    r.issue(
      "S3_ACCESS_KEY_ID",
      "missing while S3_ENDPOINT is set",
      "credentials for the custom endpoint in S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY",
    );
  }
  const cfg: S3Config = {
    bucket,
    region,
    forcePathStyle: forced ?? r.raw("S3_ENDPOINT") !== undefined,
  };
  if (endpoint !== undefined) cfg.endpoint = endpoint;
  if (credentials !== undefined) cfg.credentials = credentials;
  return cfg;
}

function readModel(r: Reader): ModelConfig {
  const dir = r.opt<string>("MODEL_DIR");
  const uri = r.opt<{ uri: string; bucket: string; prefix: string }>("MODEL_URI");
  const dig = r.opt<string>("MODEL_DIGEST");
  const dtype = r.opt<DtypeSetting>("MODEL_DTYPE");
  if (r.raw("MODEL_DIR") !== undefined && r.raw("MODEL_URI") !== undefined) {
    r.issue("MODEL_DIR", "set together with MODEL_URI", "only one of MODEL_DIR and MODEL_URI");
  }
  const withSource = <T extends object>(m: T): T & ModelSource => ({
    ...m,
    ...(dig === undefined ? {} : { digest: dig }),
    ...(dtype === undefined ? {} : { dtype }),
  });
  if (uri !== undefined) return withSource({ source: "s3" as const, ...uri });
  return withSource({ source: "dir" as const, dir: dir ?? BUNDLED_MODEL_DIR });
}

function readEngine(r: Reader): EngineConfig {
  const cfg: EngineConfig = { executionProviders: r.orDefault<ExecutionProvider[]>("EXECUTION_PROVIDERS") };
  const threads = r.opt<number>("ORT_INTRA_OP_THREADS");
  if (threads !== undefined) cfg.intraOpThreads = threads;
  return cfg;
}

const READERS: { [K in ConfigPart]: (r: Reader) => Config[K] } = {
  redis: readRedis,
  s3: readS3,
  model: readModel,
  worker: (r) => ({
    concurrency: r.orDefault<number>("WORKER_CONCURRENCY"),
    stopOnStdinEof: r.orDefault<boolean>("STAGEBEAM_STOP_ON_STDIN_EOF"),
  }),
  engine: readEngine,
  metrics: (r) => ({ port: r.orDefault<number>("METRICS_PORT"), requested: r.raw("METRICS_PORT") !== undefined }),
  logging: (r) => ({ level: r.orDefault<LogLevel>("LOG_LEVEL"), requested: r.raw("LOG_LEVEL") !== undefined }),
};

/**
 * Validate the variables of the parts a subcommand needs.
 * Throws a ConfigError listing every problem at once.
 */
export function loadConfig<const P extends ConfigPart>(env: Env, needs: readonly P[]): Pick<Config, P> {
  const r = new Reader(env);
  const out: Partial<Config> = {};
  for (const part of new Set(needs)) {
    (out as Record<string, unknown>)[part] = READERS[part](r);
  }
  if (r.issues.length > 0) {
    const order = (v: string) => {
      const i = CONFIG_VARIABLES.indexOf(v);
      return i < 0 ? CONFIG_VARIABLES.length : i;
    };
    throw new ConfigError([...r.issues].sort((a, b) => order(a.variable) - order(b.variable)));
  }
  return out as Pick<Config, P>;
}

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
