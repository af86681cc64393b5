/**
 * The one owner of a run's state. Every change of it (a transition, the end of the feed, the
 * outcome of a run's last item) is made in Redis, the authority, by the books' scripts, and then
 * mirrored into runs/<run>/manifest.json, best effort: a mirror that fails is handed to
 * `mirrorFailed` (nothing by default), and the next change writes the manifest again.
 */
import { manifestKey, type S3Store } from "../../../shared/io/storage/s3-store.ts";
import { RunManifestSchema } from "../protocol/index.ts";
import type { Outcome, Recorded, RunLedger } from "./ledger.ts";
import type { RunMeta, RunRegistry, RunState } from "./run-state.ts";

/** What happens to a mirror that could not be written (log it, or throw it to the caller). */
export type MirrorFailed = (run: string, err: Error) => void;

export class RunKeeper {
  constructor(
    private readonly books: { runs: RunRegistry; ledger: RunLedger; store: S3Store },
    private readonly mirrorFailed: MirrorFailed = () => {},
  ) {}

  /** Moves the run to `to` when its state allows it; the state it left, or null when it did not move. */
  async move(run: string, to: RunState, reason = "", now = Date.now()): Promise<RunState | null> {
    const from = await this.books.runs.transition(run, to, reason, now);
    if (from !== null) await this.mirror(run, { state: to, reason, updatedAt: now });
    return from;
  }

  /** A cancelled run goes on (`retry --reason cancelled`, RunRegistry.uncancel); true when it moved. */
  async uncancel(run: string, now = Date.now()): Promise<boolean> {
    const moved = await this.books.runs.uncancel(run, now);
    if (moved) await this.mirror(run, { state: "in_progress", reason: "", updatedAt: now });
    return moved;
  }

  /** The manifest has been read to its end; true when that completed the run. */
  async finishFeed(run: string, now = Date.now()): Promise<boolean> {
    return this.completedBy(run, await this.books.runs.finishFeed(run, now), now);
  }

  /** Completes the run when it is fed and every item has an outcome (after a retry whose items all finished already). */
  async completeIfDone(run: string, now = Date.now()): Promise<boolean> {
    return this.completedBy(run, await this.books.runs.completeIfDone(run, now), now);
  }

  /** Records an item's outcome in the ledger (RunLedger.recordOutcome), which completes the run after its last item. */
  async recordOutcome(
    run: string,
    item: string,
    outcome: Outcome,
    opts: { tokens?: number; at?: number; byWorker?: boolean } = {},
  ): Promise<Recorded> {
    const recorded = await this.books.ledger.recordOutcome(run, item, outcome, opts);
    await this.completedBy(run, recorded === "completed-run", opts.at ?? Date.now());
    return recorded;
  }

  private async completedBy(run: string, completed: boolean, at: number): Promise<boolean> {
    if (completed) await this.mirror(run, { state: "completed", reason: "", updatedAt: at });
    return completed;
  }

  private async mirror(run: string, meta: Pick<RunMeta, "state" | "reason" | "updatedAt">): Promise<void> {
    try {
      const key = manifestKey(run);
      const manifest = await this.books.store.getJson(key, RunManifestSchema);
      if (!manifest) return;
      await this.books.store.putJson(key, {
        ...manifest,
        state: meta.state,
        reason: meta.reason,
        stateAt: new Date(meta.updatedAt).toISOString(),
      });
    } catch (err) {
      this.mirrorFailed(run, err as Error);
    }
  }
}
