/**
 * infra/compose.yaml as Docker Compose reads it (`docker-compose config`, Debian's 1.29): the
 * services of the fleet on pinned images, the settings each stagebeam role needs (loaded with
 * the real config schema), healthchecks, graceful worker stops, and mounts of files that exist;
 * the Prometheus configuration it mounts checked by promtool.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { CONFIG_VARIABLES, loadConfig } from "../../shared/io/config.ts";
import { specOf, type ConfigVariable } from "../../shared/io/config-variables.ts";
import { redactSecrets } from "../../shared/io/secrets.ts";
import { LEFT_OUT, ROLE_CONFIG_PARTS } from "../support/deploy-roles.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const COMPOSE = path.join(REPO, "infra/compose.yaml");
/** The rules and dashboards, which arrive from the monitoring branch (the lead merges them in). */
const RULES = path.join("infra", "prometheus", "rules");
const DASHBOARDS = path.join("infra", "grafana");
const ARRIVING_ELSEWHERE = new Set([RULES, DASHBOARDS]);
const ROLES = ["worker", "exporter", "dashboard"] as const;

// biome-ignore lint/suspicious/noExplicitAny: compose output is untyped YAML
type Service = Record<string, any>;

function composeConfig(env: Record<string, string> = {}): { code: number; out: string; err: string } {
  const r = spawnSync("docker-compose", ["-f", COMPOSE, "config"], {
    encoding: "utf8",
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

const resolved = (() => {
  const r = composeConfig({ DASHBOARD_TOKEN: "test-token-0123456789" });
  if (r.code !== 0) throw new Error(`docker-compose config failed:\n${r.err}`);
  return parse(r.out) as { services: Record<string, Service>; volumes: Record<string, unknown> };
})();
const services = resolved.services;

/** Bind mounts as "source:target[:mode]" strings of the resolved file. */
const binds = (s: Service) =>
  ((s.volumes ?? []) as string[])
    .map((v) => v.split(":"))
    .filter(([source]) => source!.startsWith("/"))
    .map(([source, target]) => ({ source: source!, target: target! }));

describe("infra/compose.yaml", () => {
  it("holds the whole fleet, every image pinned to a version", () => {
    expect(Object.keys(services).sort()).toEqual(
      ["dashboard", "exporter", "grafana", "minio", "minio-init", "prometheus", "redis", "worker"].sort(),
    );
    for (const [name, s] of Object.entries(services)) {
      expect(s.image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(s.image, name).not.toMatch(/:latest$/);
      if (s.build) expect(existsSync(path.join(s.build.context, s.build.dockerfile)), `${name}: build.dockerfile`).toBe(true);
    }
  });

  it("runs Redis with AOF and noeviction", () => {
    const command: string[] = services.redis!.command;
    expect(command.join(" ")).toContain("--appendonly yes");
    expect(command.join(" ")).toContain("--maxmemory-policy noeviction");
  });

  it("runs Redis behind a password that every role's REDIS_URL carries, and under a memory ceiling; the password is never printed", () => {
    const command: string[] = services.redis!.command;
    const password = command[command.indexOf("--requirepass") + 1]!;
    expect(password.length).toBeGreaterThanOrEqual(8);
    expect(command[command.indexOf("--maxmemory") + 1]).toMatch(/^\d+(gb|mb)$/);
    expect(services.redis!.environment.REDISCLI_AUTH).toBe(password);
    for (const role of ROLES) {
      const url = new URL(services[role]!.environment.REDIS_URL);
      expect(decodeURIComponent(url.password), role).toBe(password);
      loadConfig(services[role]!.environment, ROLE_CONFIG_PARTS[role]!);
      expect(redactSecrets(`connecting to ${url.href}`), role).not.toContain(password);
    }
    const own = composeConfig({ DASHBOARD_TOKEN: "t", REDIS_PASSWORD: "0123abcd0123abcd", REDIS_MAXMEMORY: "8gb" });
    const s = (parse(own.out) as { services: Record<string, Service> }).services;
    expect(s.redis!.command.join(" ")).toContain("--requirepass 0123abcd0123abcd --maxmemory 8gb");
    expect(s.worker!.environment.REDIS_URL).toBe("redis://:0123abcd0123abcd@redis:6379");
  });

  it("gives each stagebeam role the settings it needs, from the one image", () => {
    for (const role of ROLES) {
      const s = services[role]!;
      expect(s.command[0], role).toBe(role);
      expect(s.image, role).toBe(services.worker!.image);
      expect(() => loadConfig(s.environment, ROLE_CONFIG_PARTS[role]!), role).not.toThrow();
      expect(s.depends_on, role).toEqual({
        redis: { condition: "service_healthy" },
        "minio-init": { condition: "service_completed_successfully" },
      });
    }
    // The worker reads every variable of its parts: each is set (empty counts as unset) or left out for a reason.
    const workerParts = new Set(ROLE_CONFIG_PARTS.worker);
    for (const name of CONFIG_VARIABLES) {
      if (!specOf(name as ConfigVariable).parts.some((p) => workerParts.has(p))) continue;
      expect(name in services.worker!.environment || name in LEFT_OUT, `worker: ${name}`).toBe(true);
    }
    expect(services.worker!.environment.S3_BUCKET).toBe("stagebeam");
    expect(services["minio-init"]!.command.join(" ")).toContain("mc mb --ignore-existing local/stagebeam");
  });

  it("scales the workers with WORKERS and stops them gracefully", () => {
    expect(services.worker!.deploy.replicas).toBe(2);
    const more = composeConfig({ DASHBOARD_TOKEN: "t", WORKERS: "5" });
    expect((parse(more.out) as { services: Record<string, Service> }).services.worker!.deploy.replicas).toBe(5);
    const command: string[] = services.worker!.command;
    const grace = Number(command[command.indexOf("--grace") + 1]);
    const [, minutes, seconds] = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(services.worker!.stop_grace_period)!;
    expect(Number(minutes ?? 0) * 60 + Number(seconds ?? 0)).toBeGreaterThanOrEqual(grace + 15);
  });

  it("checks the health of every long-running service", () => {
    for (const [name, s] of Object.entries(services)) {
      if (name === "minio-init") continue;
      expect(s.healthcheck?.test?.[0], name).toBe("CMD");
    }
    const port = services.worker!.environment.METRICS_PORT;
    expect(services.worker!.healthcheck.test.join(" ")).toContain(`http://127.0.0.1:${port}/readyz`);
  });

  it("refuses to start without DASHBOARD_TOKEN, saying so", () => {
    const r = composeConfig();
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("set DASHBOARD_TOKEN");
  });

  it("mounts files that exist, into the paths the Prometheus and Grafana configurations read", () => {
    for (const [name, s] of Object.entries(services)) {
      for (const { source } of binds(s)) {
        const rel = path.relative(REPO, source);
        expect(existsSync(source) || ARRIVING_ELSEWHERE.has(rel), `${name}: ${rel} does not exist`).toBe(true);
      }
    }
    const prometheus = binds(services.prometheus!);
    const configMount = prometheus.find((b) => b.target === "/etc/stagebeam/prometheus.yml")!;
    expect(services.prometheus!.command).toContain(`--config.file=${configMount.target}`);
    const promConfig = parse(readFileSync(configMount.source, "utf8"));
    const rulesMount = prometheus.find((b) => path.relative(REPO, b.source) === RULES)!;
    expect(promConfig.rule_files).toEqual([`${rulesMount.target}/*.yml`]);
    const port = Number(services.worker!.environment.METRICS_PORT);
    expect(
      promConfig.scrape_configs.map(
        (c: Service) => c.dns_sd_configs?.[0]?.port ?? Number(c.static_configs[0].targets[0].split(":")[1]),
      ),
    ).toEqual([port, port]);
    execFileSync("promtool", ["check", "config", configMount.source], { stdio: "pipe" });

    const grafana = binds(services.grafana!);
    const provisioning = grafana.find((b) => b.target === "/etc/grafana/provisioning")!;
    const dashboards = grafana.find((b) => path.relative(REPO, b.source) === DASHBOARDS)!;
    const provider = parse(readFileSync(path.join(provisioning.source, "dashboards/stagebeam.yml"), "utf8"));
    expect(provider.providers[0].options.path).toBe(dashboards.target);
    const datasource = parse(readFileSync(path.join(provisioning.source, "datasources/prometheus.yml"), "utf8"));
    expect(datasource.datasources[0].url).toBe("http://prometheus:9090");
  });
});
