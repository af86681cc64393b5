/**
 * `eval --out FILE`: one line per item and search setting, as JSON lines (.jsonl, .ndjson) or
 * CSV (.csv) by the file's extension, in the set's order, so that a user can join it on id.
 */
import { writeFile } from "node:fs/promises";
import { extname } from "node:path";
import { UsageError } from "../core/usage-error.ts";

export interface EvalItemRow {
  /** The search settings, as the summary table names them. */
  search: string;
  id: string;
  family: string | null;
  gold: string;
  answer: string | null;
  correct: boolean;
  wellFormed: boolean;
  summary: string | null;
  caption: string | null;
  reasoning: string | null;
  conclusion: string | null;
  /** Tokens generated for this item's candidates, the rejected ones included. */
  tokens: number;
  /** Candidates generated, pairwise judge comparisons, and the judge's correct/incorrect checks of reasonings. */
  candidates: number;
  comparisons: number;
  checks: number;
  /** Why the item has no answer (unreadable image, a prompt too long …); null when it ran. */
  error: string | null;
}

export const EVAL_ITEM_COLUMNS = [
  "search",
  "id",
  "family",
  "gold",
  "answer",
  "correct",
  "wellFormed",
  "summary",
  "caption",
  "reasoning",
  "conclusion",
  "tokens",
  "candidates",
  "comparisons",
  "checks",
  "error",
] as const satisfies readonly (keyof EvalItemRow)[];

export type EvalItemsFormat = "jsonl" | "csv";

/** The format an --out file's extension asks for; anything else is a usage error, raised before any item runs. */
export function evalItemsFormat(file: string): EvalItemsFormat {
  const ext = extname(file).toLowerCase();
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".csv") return "csv";
  throw new UsageError(`--out ${file}: expected a file name ending in .jsonl, .ndjson or .csv (the format follows it)`);
}

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled; null is empty. */
function csvField(value: string | number | boolean | null): string {
  const text = value === null ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function formatEvalItems(rows: readonly EvalItemRow[], format: EvalItemsFormat): string {
  if (format === "jsonl") return rows.map((r) => `${JSON.stringify(r)}\n`).join("");
  const lines = [EVAL_ITEM_COLUMNS.join(","), ...rows.map((r) => EVAL_ITEM_COLUMNS.map((c) => csvField(r[c])).join(","))];
  return `${lines.join("\r\n")}\r\n`;
}

export async function writeEvalItems(file: string, rows: readonly EvalItemRow[]): Promise<void> {
  await writeFile(file, formatEvalItems(rows, evalItemsFormat(file)));
}
