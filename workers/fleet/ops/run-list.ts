/** Every run the fleet knows (`stagebeam runs`), newest first, with its state, counts and age. */
import type { RunCounts, RunLedger, RunRegistry, RunState } from "../books/index.ts";

export interface RunListing {
  run: string;
  state: RunState;
  reason: string;
  createdAt: number;
  updatedAt: number;
  detached: boolean;
  counts: Pick<RunCounts, "items" | "completed" | "failed">;
  pending: number;
  /** Manifest lines the feeder has read; whether it read them all. */
  linesRead: number;
  fed: boolean;
}

export async function listRuns(deps: { runs: RunRegistry; ledger: RunLedger }, limit = 1_000): Promise<RunListing[]> {
  const names = await deps.runs.names(limit);
  const rows = await Promise.all(
    names.map(async (run): Promise<RunListing | null> => {
      const [meta, counts] = await Promise.all([deps.runs.get(run), deps.ledger.counts(run)]);
      if (!meta) return null;
      const { items, completed, failed } = counts;
      return {
        run,
        state: meta.state,
        reason: meta.reason,
        createdAt: meta.createdAt,
        updatedAt: meta.updatedAt,
        detached: meta.source.detached,
        counts: { items, completed, failed },
        pending: Math.max(0, items - completed - failed),
        linesRead: meta.cursor,
        fed: meta.fed === "1",
      };
    }),
  );
  return rows.filter((r): r is RunListing => r !== null);
}
