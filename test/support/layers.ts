/**
 * The layer rules of ARCHITECTURE.md, read from its layout table and checked against the
 * import graph. The table is the rule: a row's folder, and what code in it may import.
 *
 *   | `shared/core/` | the pure core … | `zod`, `@huggingface/jinja`, `node:crypto` |
 *
 * In the "may import" cell, each code span is a repository path prefix (it holds a `/` and
 * does not start with `@`), a package name, `node:*` (every Node built-in) or `any package`.
 * A file belongs to the row with the longest matching folder and may always import its own
 * folder.
 */
import path from "node:path";

export interface LayerRule {
  folder: string;
  mayImport: string[];
}

export interface Violation {
  file: string;
  specifier: string;
  rule: string;
}

const codeSpans = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

/** The rows of the table between `<!-- layers:start -->` and `<!-- layers:end -->`. */
export function parseLayerTable(markdown: string): LayerRule[] {
  const start = markdown.indexOf("<!-- layers:start -->");
  const end = markdown.indexOf("<!-- layers:end -->");
  if (start < 0 || end < start) throw new Error("ARCHITECTURE.md: no <!-- layers:start --> … <!-- layers:end --> table");
  const rows = markdown
    .slice(start, end)
    .split("\n")
    .filter((l) => l.startsWith("| `"));
  return rows.flatMap((row) => {
    const cells = row.split(/(?<!\\)\|/).map((c) => c.trim());
    const [, folderCell = "", , importCell = ""] = cells;
    const mayImport = codeSpans(importCell);
    return codeSpans(folderCell).map((folder) => ({ folder, mayImport }));
  });
}

const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^"';]*?from\s*["']([^"']+)["']|(?:^|[\s;(=])import\s*\(\s*["']([^"']+)["']\s*\)|^import\s*["']([^"']+)["']/gm;

/** Every module specifier a source file names (static imports, re-exports, dynamic imports of literals). */
export function importsOf(source: string): string[] {
  return [...source.matchAll(IMPORT)].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

function packageOf(specifier: string): string {
  if (specifier.startsWith("node:")) return specifier.split("/")[0]!;
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

const isPath = (entry: string) => entry.includes("/") && !entry.startsWith("@") && !entry.startsWith("node:");

function ruleFor(file: string, rules: readonly LayerRule[]): LayerRule | undefined {
  return rules.filter((r) => file === r.folder || file.startsWith(r.folder)).sort((a, b) => b.folder.length - a.folder.length)[0];
}

/** Imports that break the rules, and files that no rule covers. */
export function checkLayers(files: ReadonlyMap<string, string>, rules: readonly LayerRule[]): Violation[] {
  const violations: Violation[] = [];
  for (const [file, source] of files) {
    const rule = ruleFor(file, rules);
    if (!rule) {
      violations.push({ file, specifier: "", rule: "no row of the ARCHITECTURE.md layout table covers this file" });
      continue;
    }
    const allowed = [rule.folder, ...rule.mayImport];
    for (const specifier of importsOf(source)) {
      if (specifier.startsWith(".")) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
        if (!allowed.filter(isPath).some((p) => target === p || target.startsWith(p))) {
          violations.push({ file, specifier, rule: `${rule.folder} may import ${rule.mayImport.join(", ") || "nothing else"}` });
        }
        continue;
      }
      const pkg = packageOf(specifier);
      const ok =
        allowed.includes("any package") || allowed.includes(pkg) || (pkg.startsWith("node:") && allowed.includes("node:*"));
      if (!ok)
        violations.push({ file, specifier, rule: `${rule.folder} may import ${rule.mayImport.join(", ") || "nothing else"}` });
    }
  }
  return violations;
}
