/**
 * Print the environment-variable table generated from shared/io/config.ts, or keep a
 * Markdown file's copy of it up to date between the markers
 *   <!-- config-table:start --> ... <!-- config-table:end -->
 *
 *   tsx scripts/config-table.ts                 # print
 *   tsx scripts/config-table.ts --write README.md
 *   tsx scripts/config-table.ts --check README.md   # exit 1 when stale
 */
import { readFile, writeFile } from "node:fs/promises";
import { configTableMarkdown } from "../shared/io/config.ts";

export const START = "<!-- config-table:start -->";
export const END = "<!-- config-table:end -->";

/** Replace what stands between two marker lines; throws when the markers are missing. */
export function spliceBetween(doc: string, start: string, end: string, content: string): string {
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) throw new Error(`markers ${start} ... ${end} not found`);
  return `${doc.slice(0, a + start.length)}\n${content}${doc.slice(b)}`;
}

/** Replace the table between the markers; throws when the markers are missing. */
export function spliceConfigTable(doc: string, table = configTableMarkdown()): string {
  return spliceBetween(doc, START, END, table);
}

async function main(argv: string[]): Promise<number> {
  const [mode, file] = argv;
  if (mode === undefined) {
    process.stdout.write(configTableMarkdown());
    return 0;
  }
  if ((mode !== "--write" && mode !== "--check") || file === undefined) {
    process.stderr.write("usage: config-table.ts [--write FILE | --check FILE]\n");
    return 2;
  }
  const doc = await readFile(file, "utf8");
  const updated = spliceConfigTable(doc);
  if (mode === "--check") {
    if (updated !== doc) {
      process.stderr.write(`${file}: the configuration table is stale; run tsx scripts/config-table.ts --write ${file}\n`);
      return 1;
    }
    return 0;
  }
  if (updated !== doc) await writeFile(file, updated);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
