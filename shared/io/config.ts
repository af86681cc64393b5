/**
 * Deployment configuration: the environment variables every stagebeam process reads,
 * validated with zod at start.
 *
 * `loadConfig(env, needs)` validates only the parts a subcommand needs (a `submit` needs
 * Redis and S3 but no model; `ask` needs a model but no Redis) and throws one
 * `ConfigError` that lists every bad or missing variable with what was expected.
 * The variables themselves, and the README table made from them, are in config-variables.ts.
 */
import { redactUrlValue, rememberSecret } from "./secrets.ts";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  BUNDLED_MODEL,
  BUNDLED_VERIFIER,
  CONFIG_VARIABLES,
  specOf,
  type ConfigVariable,
  type DtypeSetting,
  type ExecutionProvider,
  type LogLevel,
  type VarSpec,
  type WorkerModel,
} from "./config-variables.ts";

export {
  BUNDLED_VERIFIER,
  CONFIG_VARIABLES,
  configTableMarkdown,
  EXECUTION_PROVIDERS,
  LOG_LEVELS,
  MODEL_DTYPES,
  parseDtypeSetting,
  type ConfigEnv,
  type ConfigVariable,
  type DtypeSetting,
  type ExecutionProvider,
  type LogLevel,
  type ModelDtype,
  type WorkerModel,
  WORKER_MODELS,
} from "./config-variables.ts";

// ---------------------------------------------------------------------------
// Public types

export interface RedisConfig {
  /** redis:// or rediss:// URL. */
  url: string;
  /** `url` is a seed node of a Redis Cluster. */
  cluster: boolean;
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

interface ModelSource {
  digest?: string;
  dtype?: DtypeSetting;
}
export type ModelConfig =
  | ({ source: "dir"; dir: string } & ModelSource)
  | ({ source: "s3"; uri: string; bucket: string; prefix: string; cacheDir: string } & ModelSource);

export interface VerifierConfig {
  /** Where the verifier is; the bundled verifier's folder unless VERIFIER_MODEL_DIR or VERIFIER_MODEL_URI says otherwise. */
  model: ModelConfig;
  /** VERIFIER_MODEL_DIR or VERIFIER_MODEL_URI was set (else the bundled folder is used only when it exists). */
  configured: boolean;
  /** What a fleet worker holds (WORKER_MODELS). */
  workerModels: WorkerModel[];
}

export interface WorkerConfig {
  concurrency: number;
  /** Total backoff time for transient failures (workers/fleet/protocol/retry-policy.ts). */
  retryBudgetSeconds: number;
  /** Exit when Redis has been silent this long (0: never). */
  redisGiveUpSeconds: number;
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

export interface DashboardConfig {
  port: number;
  /** Bearer token that unlocks the actions; undefined: read-only. */
  token?: string;
}

export interface Config {
  redis: RedisConfig;
  s3: S3Config;
  model: ModelConfig;
  verifier: VerifierConfig;
  worker: WorkerConfig;
  engine: EngineConfig;
  metrics: MetricsConfig;
  logging: LoggingConfig;
  dashboard: DashboardConfig;
}

export type ConfigPart = keyof Config;
export const CONFIG_PARTS: readonly ConfigPart[] = [
  "redis",
  "s3",
  "model",
  "verifier",
  "worker",
  "engine",
  "metrics",
  "logging",
  "dashboard",
];

export type Env = Readonly<Record<string, string | undefined>>;

/** Where MODEL_URI downloads are kept when MODEL_CACHE_DIR is unset (the spec's `whenUnset` says the same). */
export const DEFAULT_MODEL_CACHE_DIR = path.join(homedir(), ".cache", "stagebeam", "models");

/** The bundled model folder, used when neither MODEL_DIR nor MODEL_URI is set. */
export const BUNDLED_MODEL_DIR = fileURLToPath(new URL(`../../${BUNDLED_MODEL}`, import.meta.url));

/** The bundled verifier's folder, used when neither VERIFIER_MODEL_DIR nor VERIFIER_MODEL_URI is set. */
export const BUNDLED_VERIFIER_DIR = fileURLToPath(new URL(`../../${BUNDLED_VERIFIER}`, import.meta.url));

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
// Loading

function shown(spec: VarSpec, raw: string): string {
  if (spec.secret) return "(a value, hidden)";
  const v = redactUrlValue(raw);
  return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
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
    if (spec.secret) rememberSecret(raw);
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
  const url = r.req<string>("REDIS_URL") ?? "";
  if (url !== "") rememberSecret(new URL(url).password);
  return {
    url,
    cluster: r.orDefault<boolean>("REDIS_CLUSTER"),
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
  const cfg: S3Config = {
    bucket,
    region,
    forcePathStyle: forced ?? r.raw("S3_ENDPOINT") !== undefined,
  };
  if (endpoint !== undefined) cfg.endpoint = endpoint;
  if (credentials !== undefined) cfg.credentials = credentials;
  return cfg;
}

interface ModelVariables {
  dir: ConfigVariable;
  uri: ConfigVariable;
  digest: ConfigVariable;
  dtype?: ConfigVariable;
}

function readModel(r: Reader): ModelConfig {
  return readModelFrom(
    r,
    { dir: "MODEL_DIR", uri: "MODEL_URI", digest: "MODEL_DIGEST", dtype: "MODEL_DTYPE" },
    BUNDLED_MODEL_DIR,
  );
}

function readVerifier(r: Reader): VerifierConfig {
  const vars = { dir: "VERIFIER_MODEL_DIR", uri: "VERIFIER_MODEL_URI", digest: "VERIFIER_MODEL_DIGEST" } as const;
  return {
    model: readModelFrom(r, vars, BUNDLED_VERIFIER_DIR),
    configured: r.raw(vars.dir) !== undefined || r.raw(vars.uri) !== undefined,
    workerModels: r.orDefault<WorkerModel[]>("WORKER_MODELS"),
  };
}

function readModelFrom(r: Reader, v: ModelVariables, bundled: string): ModelConfig {
  const dir = r.opt<string>(v.dir);
  const uri = r.opt<{ uri: string; bucket: string; prefix: string }>(v.uri);
  const dig = r.opt<string>(v.digest);
  const dtype = v.dtype === undefined ? undefined : r.opt<DtypeSetting>(v.dtype);
  if (r.raw(v.dir) !== undefined && r.raw(v.uri) !== undefined) {
    r.issue(v.dir, `set together with ${v.uri}`, `only one of ${v.dir} and ${v.uri}`);
  }
  const withSource = <T extends object>(m: T): T & ModelSource => ({
    ...m,
    ...(dig === undefined ? {} : { digest: dig }),
    ...(dtype === undefined ? {} : { dtype }),
  });
  const cacheDir = r.opt<string>("MODEL_CACHE_DIR") ?? DEFAULT_MODEL_CACHE_DIR;
  if (uri !== undefined) return withSource({ source: "s3" as const, ...uri, cacheDir: path.resolve(cacheDir) });
  return withSource({ source: "dir" as const, dir: dir ?? bundled });
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
  verifier: readVerifier,
  worker: (r) => ({
    concurrency: r.orDefault<number>("WORKER_CONCURRENCY"),
    retryBudgetSeconds: r.orDefault<number>("WORKER_RETRY_BUDGET_SECONDS"),
    redisGiveUpSeconds: r.orDefault<number>("WORKER_REDIS_GIVE_UP_SECONDS"),
    stopOnStdinEof: r.orDefault<boolean>("STAGEBEAM_STOP_ON_STDIN_EOF"),
  }),
  engine: readEngine,
  metrics: (r) => ({ port: r.orDefault<number>("METRICS_PORT"), requested: r.raw("METRICS_PORT") !== undefined }),
  logging: (r) => ({ level: r.orDefault<LogLevel>("LOG_LEVEL"), requested: r.raw("LOG_LEVEL") !== undefined }),
  dashboard: (r) => {
    const token = r.opt<string>("DASHBOARD_TOKEN");
    return { port: r.orDefault<number>("DASHBOARD_PORT"), ...(token !== undefined ? { token } : {}) };
  },
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
