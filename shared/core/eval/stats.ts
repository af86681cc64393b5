/** Accuracy bookkeeping for evaluation runs: pure, so it is tested without a model. */

/** Wilson score interval: honest for small n and for accuracies near 0 or 1. */
export function wilson95(correct: number, total: number): [number, number] {
  if (total === 0) return [0, 1];
  const z = 1.959964;
  const p = correct / total;
  const denominator = 1 + (z * z) / total;
  const centre = (p + (z * z) / (2 * total)) / denominator;
  const half = (z * Math.sqrt((p * (1 - p)) / total + (z * z) / (4 * total * total))) / denominator;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** Answers compare case-insensitively, ignoring surrounding space and a final full stop. */
export const normalizeAnswer = (answer: string | null): string => (answer ?? "").trim().replace(/\.$/, "").toLowerCase();

export interface EvalRecord {
  /** Items without a family count overall only. */
  family?: string;
  correct: boolean;
  wellFormed: boolean;
  generatedTokens: number;
  /** The search's counts (SearchResult.counts): sampled and distinct candidates, judge calls merging saved. */
  candidates?: number;
  distinct?: number;
  saved?: number;
}

/** Engine work over a whole run; items share batched calls, so cost is known only in total. */
export interface RunCost {
  decoderTokens: number;
  forwardPasses: number;
}

export interface Tally {
  n: number;
  correct: number;
  accuracy: number;
  ci95: [number, number];
}

export interface EvalSummary {
  overall: Tally;
  byFamily: Record<string, Tally>;
  formatRate: number;
  generatedTokensPerItem: number;
  candidatesPerItem: number;
  distinctPerItem: number;
  /** Judge calls (comparisons, checks, verifications) that equal texts did not need. */
  savedPerItem: number;
  decoderTokensPerItem: number;
  forwardPassesPerItem: number;
  itemsPerSecond: number;
  seconds: number;
}

function tally(records: readonly EvalRecord[]): Tally {
  const correct = records.filter((r) => r.correct).length;
  return {
    n: records.length,
    correct,
    accuracy: records.length ? correct / records.length : 0,
    ci95: wilson95(correct, records.length),
  };
}

export function summarize(records: readonly EvalRecord[], seconds: number, cost: RunCost): EvalSummary {
  const families = [...new Set(records.flatMap((r) => (r.family === undefined ? [] : [r.family])))].sort();
  const mean = (pick: (r: EvalRecord) => number) =>
    records.length ? records.reduce((s, r) => s + pick(r), 0) / records.length : 0;
  return {
    overall: tally(records),
    byFamily: Object.fromEntries(families.map((f) => [f, tally(records.filter((r) => r.family === f))])),
    formatRate: mean((r) => (r.wellFormed ? 1 : 0)),
    generatedTokensPerItem: mean((r) => r.generatedTokens),
    candidatesPerItem: mean((r) => r.candidates ?? 0),
    distinctPerItem: mean((r) => r.distinct ?? 0),
    savedPerItem: mean((r) => r.saved ?? 0),
    decoderTokensPerItem: records.length ? cost.decoderTokens / records.length : 0,
    forwardPassesPerItem: records.length ? cost.forwardPasses / records.length : 0,
    itemsPerSecond: seconds > 0 ? records.length / seconds : 0,
    seconds,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}`;
export const formatTally = (t: Tally): string => `${pct(t.accuracy)}% [${pct(t.ci95[0])}, ${pct(t.ci95[1])}] (n=${t.n})`;
