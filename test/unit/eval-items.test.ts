/** `eval --out`: the format follows the extension, CSV fields are quoted as RFC 4180 says, and the tables keep to 120 columns. */
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { formatOutcomes, TABLE_WIDTH, type EvalOutcome } from "../../apps/cli/commands/eval.ts";
import { summarize } from "../../shared/core/eval/stats.ts";
import { parseSearchSettings } from "../../shared/core/search/settings.ts";
import { EVAL_ITEM_COLUMNS, evalItemsFormat, formatEvalItems, type EvalItemRow } from "../../shared/io/eval-items.ts";

const row: EvalItemRow = {
  search: "stage N=4 score",
  id: 'u,1 "q"',
  family: null,
  gold: "yes",
  answer: "yes",
  correct: true,
  wellFormed: true,
  summary: "I will look.",
  caption: "A red cube,\nand a blue ball.",
  reasoning: "So yes.",
  conclusion: "yes",
  tokens: 120,
  candidates: 16,
  comparisons: 12,
  checks: 0,
  error: null,
};

describe("eval --out", () => {
  it("takes .jsonl, .ndjson and .csv, and refuses another extension as a usage error", () => {
    expect(evalItemsFormat("a/b.JSONL")).toBe("jsonl");
    expect(evalItemsFormat("b.ndjson")).toBe("jsonl");
    expect(evalItemsFormat("b.csv")).toBe("csv");
    expect(() => evalItemsFormat("b.txt")).toThrow(/--out b\.txt: expected a file name ending in \.jsonl, \.ndjson or \.csv/);
  });

  it("writes CSV that a CSV reader reads back field for field, and JSON lines that parse back", () => {
    const csv = formatEvalItems([row, { ...row, id: "u2", answer: null, correct: false, error: "file not found" }], "csv");
    const records = parse(csv, { columns: true }) as Record<string, string>[];
    expect(Object.keys(records[0]!)).toEqual([...EVAL_ITEM_COLUMNS]);
    expect(records[0]).toMatchObject({ id: 'u,1 "q"', caption: "A red cube,\nand a blue ball.", correct: "true", family: "" });
    expect(records[1]).toMatchObject({ id: "u2", answer: "", error: "file not found" });
    const jsonl = formatEvalItems([row], "jsonl");
    expect(JSON.parse(jsonl.trim())).toEqual(row);
  });

  it("splits the per-family table so that no line runs past 120 columns, every setting and family still shown", () => {
    const families = ["count", "subtract", "exist", "attribute", "compare"];
    const specs = [
      "none",
      "greedy",
      "best-of-n",
      "vote",
      "sentence",
      "stage",
      "stage",
      "vote-weighted",
      "stage",
      "stage",
      "best-of-n",
    ];
    const outcomes: EvalOutcome[] = specs.map((strategy, i) => ({
      settings: parseSearchSettings({ strategy, beam: 2 + i, seed: 1, judgeMode: i % 2 ? "generate" : "score" }),
      summary: summarize(
        families.map((family, j) => ({ family, correct: (i + j) % 2 === 0, wellFormed: true, generatedTokens: 10 })),
        1,
        { decoderTokens: 100, forwardPasses: 10 },
      ),
      failures: [],
      items: [],
    }));
    const text = formatOutcomes(outcomes);
    for (const line of text.split("\n")) expect(line.length, line).toBeLessThanOrEqual(TABLE_WIDTH);
    const perFamily = text.slice(text.indexOf("accuracy per family:"));
    expect(perFamily.match(/^family +n +/gm)!.length).toBeGreaterThan(1);
    for (const f of families) expect(perFamily.match(new RegExp(`^${f} +1 `, "gm"))!.length).toBeGreaterThan(1);
    for (const label of ["best-of-n N=12 score", "vote-weighted N=9", "stage N=11 generate"]) expect(perFamily).toContain(label);
  });
});
