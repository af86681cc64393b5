/**
 * Print the table of stagebeam's alerts, made from infra/prometheus/rules/alerts.yml (name,
 * severity, how long it must hold, what to do first), or keep a Markdown file's copy of it up
 * to date between the markers
 *   <!-- alerts-table:start --> ... <!-- alerts-table:end -->
 *
 *   tsx scripts/alerts-table.ts [--write README.md | --check README.md]
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { docTableMain } from "./doc-table.ts";

export const START = "<!-- alerts-table:start -->";
export const END = "<!-- alerts-table:end -->";
export const ALERTS_FILE = new URL("../infra/prometheus/rules/alerts.yml", import.meta.url);

interface AlertRule {
  alert: string;
  for?: string;
  labels?: { severity?: string };
  annotations: { runbook: string };
}

export function alertRules(): AlertRule[] {
  const doc = parse(readFileSync(ALERTS_FILE, "utf8")) as { groups: { rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules).filter((r) => typeof r.alert === "string");
}

export function alertsTableMarkdown(): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const lines = alertRules().map(
    (r) => `| \`${r.alert}\` | ${r.labels?.severity ?? "—"} | ${r.for ?? "at once"} | ${esc(r.annotations.runbook)} |`,
  );
  return `${["| Alert | Severity | Holds for | What to do first |", "|---|---|---|---|", ...lines].join("\n")}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await docTableMain(
    { script: "alerts-table.ts", what: "alerts table", start: START, end: END, markdown: alertsTableMarkdown },
    process.argv.slice(2),
  );
}
