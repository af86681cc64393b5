/**
 * Print the table of every Prometheus series stagebeam exports, made from the registries
 * themselves (names, types, labels, help texts), or keep a Markdown file's copy of it up to
 * date between the markers
 *   <!-- metrics-table:start --> ... <!-- metrics-table:end -->
 *
 *   tsx scripts/metrics-table.ts                 # print
 *   tsx scripts/metrics-table.ts --write README.md
 *   tsx scripts/metrics-table.ts --check README.md   # exit 1 when stale
 */
import type { Registry } from "prom-client";
import { METRIC_NAMES, createMetrics, createRegistry } from "../shared/io/metrics.ts";
import { producerMetrics } from "../workers/fleet/feed/index.ts";
import { REDIS_SERIES, registerExporterSeries } from "../workers/fleet/ops/index.ts";
import { docTableMain } from "./doc-table.ts";

export const START = "<!-- metrics-table:start -->";
export const END = "<!-- metrics-table:end -->";

interface Row {
  name: string;
  type: string;
  labels: readonly string[];
  process: string;
  help: string;
}

/** The producer's S3 store reports into the same series as the workers'. */
const ALSO_PRODUCER: readonly string[] = [METRIC_NAMES.s3RequestSeconds, METRIC_NAMES.s3Errors];

function rowsOf(registry: Registry, process: string): Row[] {
  return registry.getMetricsAsArray().map((m) => ({
    name: m.name,
    type: String(m.type),
    labels: (m as unknown as { labelNames?: readonly string[] }).labelNames ?? [],
    process:
      m.name === METRIC_NAMES.buildInfo ? "every process" : ALSO_PRODUCER.includes(m.name) ? `${process}, producer` : process,
    help: m.help,
  }));
}

/** Every series: the process series first, then worker, producer and exporter; prom-client's default process metrics are left out. */
export function metricRows(): Row[] {
  const worker = createMetrics({ defaultMetrics: false }).registry;
  const producer = createRegistry({ defaultMetrics: false });
  producerMetrics(producer);
  const exporter = createRegistry({ defaultMetrics: false });
  registerExporterSeries(exporter);
  const rows = [
    ...rowsOf(worker, "worker"),
    ...rowsOf(producer, "producer").filter((r) => r.process !== "every process"),
    ...rowsOf(exporter, "exporter").filter((r) => r.process !== "every process"),
    ...REDIS_SERIES.map((s) => ({ ...s, process: "exporter" })),
  ];
  return [...rows.filter((r) => r.process === "every process"), ...rows.filter((r) => r.process !== "every process")];
}

export function metricsTableMarkdown(): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const lines = metricRows().map(
    (r) =>
      `| \`${r.name}\` | ${r.type} | ${r.labels.length > 0 ? r.labels.map((l) => `\`${l}\``).join(", ") : "—"} | ${r.process} | ${esc(r.help)} |`,
  );
  return `${["| Series | Type | Labels | Exported by | Meaning |", "|---|---|---|---|---|", ...lines].join("\n")}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await docTableMain(
    { script: "metrics-table.ts", what: "metrics table", start: START, end: END, markdown: metricsTableMarkdown },
    process.argv.slice(2),
  );
}
