/**
 * The README holds tables generated from the code (settings, metrics, alerts), each between
 * two marker lines. Each table's script prints it, writes it into a file (`--write FILE`) or
 * fails when the file's copy is stale (`--check FILE`), and a unit test checks the README.
 */
import { readFile, writeFile } from "node:fs/promises";

/** Replace what stands between two marker lines; throws when the markers are missing. */
export function spliceBetween(doc: string, start: string, end: string, content: string): string {
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) throw new Error(`markers ${start} ... ${end} not found`);
  return `${doc.slice(0, a + start.length)}\n${content}${doc.slice(b)}`;
}

export interface DocTable {
  /** The script's file name, for its usage line and its stale message. */
  script: string;
  /** What the table is, e.g. "configuration table". */
  what: string;
  start: string;
  end: string;
  markdown(): string;
}

/** The command line of a table script; returns its exit code. */
export async function docTableMain(table: DocTable, argv: string[]): Promise<number> {
  const [mode, file] = argv;
  if (mode === undefined) {
    process.stdout.write(table.markdown());
    return 0;
  }
  if ((mode !== "--write" && mode !== "--check") || file === undefined) {
    process.stderr.write(`usage: ${table.script} [--write FILE | --check FILE]\n`);
    return 2;
  }
  const doc = await readFile(file, "utf8");
  const updated = spliceBetween(doc, table.start, table.end, table.markdown());
  if (mode === "--check") {
    if (updated === doc) return 0;
    process.stderr.write(`${file}: the ${table.what} is stale; run tsx scripts/${table.script} --write ${file}\n`);
    return 1;
  }
  if (updated !== doc) await writeFile(file, updated);
  return 0;
}
