/**
 * The producer's de-duplication: each line of a chunk is looked up by its item id in the
 * run's ledger (items already submitted) and among the lines seen so far in the chunk.
 *
 *   skipped     this very line was submitted before (a resumed or repeated submit)
 *   duplicate   another line of the run has the same item id
 *   new         not seen yet, or seen as a bad line that may be fixed now: to be enqueued,
 *               or recorded as a bad line
 */
import { lineItemKey, toItemId } from "../../../shared/core/ids.ts";
import type { ManifestEntry } from "../../../shared/io/manifest.ts";
import type { RunLedger } from "../books/index.ts";

export type SortedLine = { entry: ManifestEntry; key: string } & (
  | { kind: "skipped" }
  | { kind: "duplicate"; firstLine: number }
  | { kind: "new"; wasBad: boolean }
);

/** The item id a line is known by in the ledger; a bad line without an id is known by its line number. */
export function lineKey(e: ManifestEntry): string {
  if (e.ok) return toItemId(e.item.id);
  return e.id !== undefined ? toItemId(e.id) : lineItemKey("line", e.line);
}

/** The key a duplicate line's failure record is kept under (its id's key belongs to the first line). */
export const duplicateLineKey = (line: number): string => lineItemKey("dup-line", line);

/** The lines of a chunk, in order, each with its item id and what it is. */
export async function sortChunk(run: string, chunk: readonly ManifestEntry[], ledger: RunLedger): Promise<SortedLine[]> {
  const keys = chunk.map(lineKey);
  const known = await ledger.submittedLines(run, keys);
  // A line refused at submit (b:<reason>) is looked at again: the manifest may have been fixed.
  const again = keys.filter((_, i) => known[i] === chunk[i]!.line);
  const outcomes = new Map((await ledger.outcomesOf(run, again)).map((o, i) => [again[i]!, o]));
  const seen = new Map<string, number>();
  return chunk.map((entry, i): SortedLine => {
    const key = keys[i]!;
    const firstLine = known[i] ?? seen.get(key) ?? null;
    if (firstLine === entry.line) {
      if (!outcomes.get(key)?.startsWith("b:")) return { entry, key, kind: "skipped" };
      seen.set(key, entry.line);
      return { entry, key, kind: "new", wasBad: true };
    }
    if (firstLine !== null) return { entry, key, kind: "duplicate", firstLine };
    seen.set(key, entry.line);
    return { entry, key, kind: "new", wasBad: false };
  });
}
