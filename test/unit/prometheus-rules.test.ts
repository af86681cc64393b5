/**
 * The Prometheus configuration and rules under infra/prometheus/, checked by promtool (the
 * rules' syntax, the config, and the rule unit tests in infra/prometheus/tests/), and the
 * Kubernetes PrometheusRule that wraps the same rule groups.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { END as ALERTS_END, START as ALERTS_START, alertRules, alertsTableMarkdown } from "../../scripts/alerts-table.ts";
import { spliceBetween } from "../../scripts/doc-table.ts";
import { PROMETHEUS_RULE_FILE, RULE_FILES, prometheusRuleYaml } from "../../scripts/prometheus-rule.ts";

const ROOT = join(import.meta.dirname, "../..");
const DIR = join(ROOT, "infra/prometheus");

/** promtool on PATH, or a failure that says how to get it. */
function promtool(args: string[]): string {
  const found = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
  if (found.status !== 0)
    throw new Error("promtool is not on PATH: run scripts/ensure-system-deps.sh (Debian package prometheus)");
  const r = spawnSync(found.stdout.trim(), args, { cwd: DIR, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`promtool ${args.join(" ")} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

describe("infra/prometheus", () => {
  it("promtool accepts the rule files and the scrape config", () => {
    expect(promtool(["check", "rules", ...RULE_FILES.map((f) => join(ROOT, f))])).toMatch(/SUCCESS: \d+ rules found/);
    expect(promtool(["check", "config", "prometheus.yml"])).toContain("is valid prometheus config file syntax");
  });

  it("passes the rule unit tests (promtool test rules)", () => {
    const tests = readdirSync(join(DIR, "tests")).filter((f) => f.endsWith(".yml"));
    expect(tests.length).toBeGreaterThan(0);
    const out = promtool(["test", "rules", ...tests.map((f) => join("tests", f))]);
    expect(out.match(/SUCCESS/g)).toHaveLength(tests.length);
  });

  it("the config loads exactly the rule files the PrometheusRule wraps", () => {
    const config = readFileSync(join(DIR, "prometheus.yml"), "utf8");
    const loaded = [...config.matchAll(/^ {2}- (rules\/\S+\.yml)$/gm)].map((m) => `infra/prometheus/${m[1]}`);
    expect(loaded).toEqual([...RULE_FILES]);
  });

  it("every alert tells what to do (annotations.runbook)", () => {
    const alerts = ruleGroups().flatMap((g) => g.rules.filter((r) => r.alert !== undefined));
    expect(alerts.length).toBeGreaterThan(5);
    for (const a of alerts) expect(a.annotations?.runbook, a.alert).toMatch(/^\S.{20,}/);
  });

  it("the README's alerts table is the one made from alerts.yml (npx tsx scripts/alerts-table.ts --write README.md)", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    expect(spliceBetween(readme, ALERTS_START, ALERTS_END, alertsTableMarkdown())).toBe(readme);
    expect(
      alertsTableMarkdown()
        .split("\n")
        .filter((l) => l.startsWith("| `")),
    ).toHaveLength(alertRules().length);
  });
});

describe(PROMETHEUS_RULE_FILE, () => {
  it("is what scripts/prometheus-rule.ts makes from the rule files (run it with --write after editing them)", () => {
    expect(readFileSync(join(ROOT, PROMETHEUS_RULE_FILE), "utf8")).toBe(prometheusRuleYaml());
  });

  it("is a PrometheusRule holding exactly the groups of the rule files", () => {
    const resource = parse(readFileSync(join(ROOT, PROMETHEUS_RULE_FILE), "utf8"));
    expect(resource).toMatchObject({ apiVersion: "monitoring.coreos.com/v1", kind: "PrometheusRule" });
    expect(resource.spec.groups).toEqual(ruleGroups());
  });
});

interface Rule {
  alert?: string;
  record?: string;
  annotations?: Record<string, string>;
}

function ruleGroups(): { name: string; rules: Rule[] }[] {
  return RULE_FILES.flatMap((f) => parse(readFileSync(join(ROOT, f), "utf8")).groups);
}
