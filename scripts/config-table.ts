/**
 * Print the environment-variable table generated from shared/io/config.ts, or keep a
 * Markdown file's copy of it up to date between the markers
 *   <!-- config-table:start --> ... <!-- config-table:end -->
 *
 *   tsx scripts/config-table.ts                 # print
 *   tsx scripts/config-table.ts --write README.md
 *   tsx scripts/config-table.ts --check README.md   # exit 1 when stale
 */
import { docTableMain, spliceBetween } from "./doc-table.ts";
import { configTableMarkdown } from "../shared/io/config.ts";

export const START = "<!-- config-table:start -->";
export const END = "<!-- config-table:end -->";

/** Replace the table between the markers; throws when the markers are missing. */
export function spliceConfigTable(doc: string, table = configTableMarkdown()): string {
  return spliceBetween(doc, START, END, table);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await docTableMain(
    { script: "config-table.ts", what: "configuration table", start: START, end: END, markdown: configTableMarkdown },
    process.argv.slice(2),
  );
}
