import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  BUNDLED_MODEL_DIR,
  CONFIG_PARTS,
  CONFIG_VARIABLES,
  ConfigError,
  configTableMarkdown,
  DEFAULT_MODEL_CACHE_DIR,
  loadConfig,
} from "../../shared/io/config.ts";
import { END, START, spliceConfigTable } from "../../scripts/config-table.ts";

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("applies defaults", () => {
    const cfg = loadConfig({ REDIS_URL: "redis://127.0.0.1:6379", S3_BUCKET: "results" }, CONFIG_PARTS);
    expect(cfg.redis).toEqual({ url: "redis://127.0.0.1:6379", cluster: false, queuePrefix: "{sb}" });
    expect(cfg.s3).toEqual({ bucket: "results", region: "us-east-1", forcePathStyle: false });
    expect(cfg.model).toEqual({ source: "dir", dir: BUNDLED_MODEL_DIR });
    expect(cfg.worker).toEqual({ concurrency: 4, retryBudgetSeconds: 600, redisGiveUpSeconds: 300, stopOnStdinEof: false });
    expect(cfg.engine).toEqual({ executionProviders: ["cpu"] });
    expect(cfg.metrics).toEqual({ port: 9464, requested: false });
    expect(cfg.logging).toEqual({ level: "info", requested: false });
    expect(cfg.dashboard).toEqual({ port: 8080 });
  });

  it("validates only the parts asked for", () => {
    // No REDIS_URL, no S3_BUCKET: fine for a command that needs only the model and logging.
    const cfg = loadConfig({ MODEL_DIR: "/models/x", LOG_LEVEL: "debug" }, ["model", "logging"]);
    expect(cfg).toEqual({ model: { source: "dir", dir: "/models/x" }, logging: { level: "debug", requested: true } });
    expect(Object.keys(cfg)).toEqual(["model", "logging"]);
    // A bad variable of a part not asked for is ignored.
    expect(() => loadConfig({ WORKER_CONCURRENCY: "lots" }, ["logging"])).not.toThrow();
  });

  it("lists every bad or missing variable in one error, with what was expected", () => {
    const err = errorOf(() =>
      loadConfig(
        {
          S3_ENDPOINT: "localhost:4568",
          S3_BUCKET: "Bad_Bucket",
          WORKER_CONCURRENCY: "0",
          EXECUTION_PROVIDERS: "cuda,tpu",
          METRICS_PORT: "70000",
          LOG_LEVEL: "loud",
          QUEUE_PREFIX: "sb",
          S3_ACCESS_KEY_ID: "AK",
          S3_SECRET_ACCESS_KEY: "SK",
        },
        CONFIG_PARTS,
      ),
    );
    const vars = err.issues.map((i) => i.variable);
    expect(vars).toEqual([
      "REDIS_URL",
      "QUEUE_PREFIX",
      "S3_ENDPOINT",
      "S3_BUCKET",
      "WORKER_CONCURRENCY",
      "EXECUTION_PROVIDERS",
      "METRICS_PORT",
      "LOG_LEVEL",
    ]);
    expect(err.message).toContain("Invalid configuration (8 problems)");
    expect(err.message).toContain("REDIS_URL: missing; expected a redis:// or rediss:// URL");
    expect(err.message).toContain('WORKER_CONCURRENCY: got "0"; expected an integer from 1 to 1024');
    expect(err.message).toContain('EXECUTION_PROVIDERS: got "cuda,tpu"; expected a comma-separated list of cuda, webgpu, cpu');
    expect(err.message).toContain('S3_ENDPOINT: got "localhost:4568"; expected an http:// or https:// URL');
    expect(err.message).toContain("QUEUE_PREFIX");
  });

  it("never echoes secrets or URL passwords", () => {
    const err = errorOf(() =>
      loadConfig({ REDIS_URL: "http://user:hunter2@host:6379", S3_BUCKET: "b", S3_SECRET_ACCESS_KEY: "topsecret" }, [
        "redis",
        "s3",
      ]),
    );
    expect(err.message).not.toContain("hunter2");
    expect(err.message).not.toContain("topsecret");
    expect(err.message).toContain('REDIS_URL: got "http://user:***@host:6379"');
    expect(err.message).toContain("S3_ACCESS_KEY_ID: missing while S3_SECRET_ACCESS_KEY is set");
  });

  it("reads the dashboard's port and token, and never echoes a bad token", () => {
    const token = "0123456789abcdef-token";
    expect(loadConfig({ DASHBOARD_PORT: "0", DASHBOARD_TOKEN: token }, ["dashboard"]).dashboard).toEqual({ port: 0, token });
    const err = errorOf(() => loadConfig({ DASHBOARD_TOKEN: "short secret" }, ["dashboard"]));
    expect(err.message).toContain("DASHBOARD_TOKEN: got (a value, hidden); expected a token of 16 to 512 characters");
    expect(err.message).not.toContain("short secret");
  });

  it("reads S3 settings, credentials and path style", () => {
    const custom = loadConfig(
      {
        S3_ENDPOINT: "http://127.0.0.1:4568",
        S3_BUCKET: "stagebeam",
        S3_ACCESS_KEY_ID: "S3RVER",
        S3_SECRET_ACCESS_KEY: "S3RVER",
      },
      ["s3"],
    );
    expect(custom.s3).toEqual({
      endpoint: "http://127.0.0.1:4568",
      bucket: "stagebeam",
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    const aws = loadConfig(
      {
        S3_BUCKET: "b-1",
        S3_REGION: "eu-west-1",
        AWS_ACCESS_KEY_ID: "A",
        AWS_SECRET_ACCESS_KEY: "S",
        S3_FORCE_PATH_STYLE: "yes",
      },
      ["s3"],
    );
    expect(aws.s3.credentials).toEqual({ accessKeyId: "A", secretAccessKey: "S" });
    expect(aws.s3.forcePathStyle).toBe(true);
    expect(aws.s3.endpoint).toBeUndefined();
    // Real AWS with no explicit credentials: the SDK default chain (IAM role) is used.
    expect(loadConfig({ S3_BUCKET: "b-1" }, ["s3"]).s3.credentials).toBeUndefined();
    // A custom endpoint (MinIO, a VPC endpoint) without keys also takes the default chain (IRSA, profiles, instance roles).
    expect(loadConfig({ S3_BUCKET: "b-1", S3_ENDPOINT: "http://m:9000" }, ["s3"]).s3).toEqual({
      endpoint: "http://m:9000",
      bucket: "b-1",
      region: "us-east-1",
      forcePathStyle: true,
    });
    expect(errorOf(() => loadConfig({ S3_BUCKET: "b-1", S3_FORCE_PATH_STYLE: "maybe" }, ["s3"])).issues[0]?.variable).toBe(
      "S3_FORCE_PATH_STYLE",
    );
  });

  it("takes a credential pair both or neither, for the S3_* and the AWS_* pair alike", () => {
    const half = (env: Record<string, string>) => errorOf(() => loadConfig({ S3_BUCKET: "b-1", ...env }, ["s3"])).issues;
    for (const endpoint of [{}, { S3_ENDPOINT: "http://m:9000" }] as Record<string, string>[]) {
      expect(half({ ...endpoint, S3_ACCESS_KEY_ID: "A" })).toEqual([
        {
          variable: "S3_SECRET_ACCESS_KEY",
          problem: "missing while S3_ACCESS_KEY_ID is set",
          expected: "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY set together",
        },
      ]);
      expect(half({ ...endpoint, AWS_SECRET_ACCESS_KEY: "S" })).toEqual([
        {
          variable: "AWS_ACCESS_KEY_ID",
          problem: "missing while AWS_SECRET_ACCESS_KEY is set",
          expected: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set together",
        },
      ]);
    }
    // The S3_* pair wins over the AWS_* pair; a half S3_* pair is not completed from AWS_*.
    const both = {
      S3_BUCKET: "b-1",
      S3_ACCESS_KEY_ID: "A",
      S3_SECRET_ACCESS_KEY: "S",
      AWS_ACCESS_KEY_ID: "X",
      AWS_SECRET_ACCESS_KEY: "Y",
    };
    expect(loadConfig(both, ["s3"]).s3.credentials).toEqual({ accessKeyId: "A", secretAccessKey: "S" });
    expect(half({ S3_ACCESS_KEY_ID: "A", AWS_ACCESS_KEY_ID: "X", AWS_SECRET_ACCESS_KEY: "Y" })[0]?.variable).toBe(
      "S3_SECRET_ACCESS_KEY",
    );
  });

  it("keeps MODEL_URI downloads in MODEL_CACHE_DIR, by default under the home folder's cache", () => {
    const byDefault = loadConfig({ MODEL_URI: "s3://models/tiny" }, ["model"]).model;
    expect(byDefault).toMatchObject({ source: "s3", cacheDir: DEFAULT_MODEL_CACHE_DIR });
    expect(DEFAULT_MODEL_CACHE_DIR).toBe(join(homedir(), ".cache", "stagebeam", "models"));
    const chosen = loadConfig({ MODEL_URI: "s3://models/tiny", MODEL_CACHE_DIR: "/var/cache/sb" }, ["model"]).model;
    expect(chosen).toMatchObject({ source: "s3", cacheDir: "/var/cache/sb" });
    // A local folder needs no cache.
    expect(loadConfig({ MODEL_CACHE_DIR: "/var/cache/sb" }, ["model"]).model).toEqual({ source: "dir", dir: BUNDLED_MODEL_DIR });
  });

  it("reads the model source", () => {
    const s3 = loadConfig({ MODEL_URI: "s3://models/tiny/v1", MODEL_DIGEST: "AB".repeat(32) }, ["model"]);
    expect(s3.model).toEqual({
      source: "s3",
      uri: "s3://models/tiny/v1",
      bucket: "models",
      prefix: "tiny/v1/",
      cacheDir: DEFAULT_MODEL_CACHE_DIR,
      digest: `sha256:${"ab".repeat(32)}`,
    });
    const err = errorOf(() => loadConfig({ MODEL_DIR: "/m", MODEL_URI: "s3://models/x", MODEL_DIGEST: "md5:1" }, ["model"]));
    expect(err.issues.map((i) => i.variable)).toEqual(["MODEL_DIR", "MODEL_DIGEST"]);
    expect(err.message).toContain("only one of MODEL_DIR and MODEL_URI");
    expect(errorOf(() => loadConfig({ MODEL_URI: "https://x/y" }, ["model"])).message).toContain("an s3://bucket/prefix URI");
  });

  it("parses engine and worker settings", () => {
    const cfg = loadConfig({ EXECUTION_PROVIDERS: " CUDA , cpu,cuda ", ORT_INTRA_OP_THREADS: "8", WORKER_CONCURRENCY: "16" }, [
      "engine",
      "worker",
    ]);
    expect(cfg.engine).toEqual({ executionProviders: ["cuda", "cpu"], intraOpThreads: 8 });
    expect(cfg.worker.concurrency).toBe(16);
    expect(errorOf(() => loadConfig({ ORT_INTRA_OP_THREADS: "1.5" }, ["engine"])).issues).toHaveLength(1);
    // Empty values count as unset.
    expect(loadConfig({ WORKER_CONCURRENCY: "" }, ["worker"]).worker.concurrency).toBe(4);
    expect(loadConfig({ STAGEBEAM_STOP_ON_STDIN_EOF: "1" }, ["worker"]).worker.stopOnStdinEof).toBe(true);
    expect(errorOf(() => loadConfig({ STAGEBEAM_STOP_ON_STDIN_EOF: "2" }, ["worker"])).issues[0]?.variable).toBe(
      "STAGEBEAM_STOP_ON_STDIN_EOF",
    );
  });

  it("tells whether METRICS_PORT was set, for the commands that serve /metrics only on request", () => {
    expect(loadConfig({ METRICS_PORT: "0" }, ["metrics"]).metrics).toEqual({ port: 0, requested: true });
    expect(loadConfig({ METRICS_PORT: " " }, ["metrics"]).metrics).toEqual({ port: 9464, requested: false });
  });

  it("accepts hash-tagged queue prefixes only", () => {
    expect(loadConfig({ REDIS_URL: "rediss://h:6380/2", QUEUE_PREFIX: "prod:{sb}" }, ["redis"]).redis.queuePrefix).toBe(
      "prod:{sb}",
    );
    for (const bad of ["sb", "{}", "{a b}", "{{sb}}"]) {
      expect(() => loadConfig({ REDIS_URL: "redis://h", QUEUE_PREFIX: bad }, ["redis"]), bad).toThrow(ConfigError);
    }
  });
});

describe("configTableMarkdown", () => {
  it("documents every variable with its default", () => {
    const table = configTableMarkdown();
    const rows = table.trim().split("\n");
    expect(rows[0]).toBe("| Variable | Default | Used by | Meaning |");
    expect(rows).toHaveLength(CONFIG_VARIABLES.length + 2);
    for (const v of CONFIG_VARIABLES) expect(table).toContain(`| \`${v}\` |`);
    expect(table).toContain("| `REDIS_URL` | required | redis |");
    expect(table).toContain("| `WORKER_CONCURRENCY` | `4` | worker |");
    expect(table).toContain("| `QUEUE_PREFIX` | `{sb}` | redis |");
    expect(table).toContain("| `METRICS_PORT` | `9464` | metrics |");
    expect(table).toContain("| `MODEL_DIR` | bundled `models/stagebeam-tiny` | model |");
  });

  it("is the table in the README", async () => {
    const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
    expect(spliceConfigTable(readme)).toBe(readme);
  });
});

describe("spliceConfigTable", () => {
  it("replaces the table between the markers and is stable", () => {
    const doc = `# stagebeam\n\n${START}\nold table\n${END}\n\nmore text\n`;
    const once = spliceConfigTable(doc);
    expect(once).toContain(configTableMarkdown());
    expect(once).not.toContain("old table");
    expect(once.endsWith(`${END}\n\nmore text\n`)).toBe(true);
    expect(spliceConfigTable(once)).toBe(once);
    expect(() => spliceConfigTable("no markers")).toThrow(/markers/);
  });
});
