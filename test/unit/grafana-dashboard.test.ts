/**
 * The Grafana provisioning under infra/grafana/: the dashboard's panels use the provisioned
 * datasource and do not overlap. (That each panel's query returns data from a real fleet is
 * test/integration/observability.test.ts.)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const DIR = join(import.meta.dirname, "../../infra/grafana");

interface Panel {
  id: number;
  title: string;
  datasource: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets: { refId: string; expr: string; datasource: { uid: string } }[];
}

const dashboard = JSON.parse(readFileSync(join(DIR, "dashboards/stagebeam.json"), "utf8")) as { uid: string; panels: Panel[] };
const datasources = parse(readFileSync(join(DIR, "provisioning/datasources/prometheus.yaml"), "utf8")).datasources as {
  uid: string;
  type: string;
}[];

describe("infra/grafana", () => {
  it("every panel and query uses the provisioned Prometheus datasource", () => {
    expect(datasources).toHaveLength(1);
    const [prometheus] = datasources;
    expect(prometheus!.type).toBe("prometheus");
    for (const p of dashboard.panels) {
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: prometheus!.uid });
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) expect(t.datasource.uid, `${p.title} ${t.refId}`).toBe(prometheus!.uid);
    }
  });

  it("panels have unique ids and titles, fit 24 columns and do not overlap", () => {
    const panels = dashboard.panels;
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    expect(new Set(panels.map((p) => p.title)).size).toBe(panels.length);
    const cells = new Map<string, string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          expect(cells.get(`${i},${j}`), `${p.title} overlaps`).toBeUndefined();
          cells.set(`${i},${j}`, p.title);
        }
      }
    }
  });
});
