/**
 * The batcher: every decoder call of the engine goes through here, one at a time. Callers queue
 * prefill rows and sequences to decode; the loop asks batch-policy.ts what the next call is and
 * which rows it takes, has batch-executor.ts run it, applies each sequence's stop rule to its
 * sampled token, and settles the callers' promises.
 *
 * Decode batches are rebuilt (rows copied, padding shrunk) only when sequences finish or join;
 * while membership is unchanged each step's `present` is the next step's `past`. The scheduler
 * holds a reference to every KV store it may still read: a queued prefill row's base, each
 * sequence's current cache, the last step's cache; each is released as soon as it is not. `session.run`
 * is async, so callers keep running (and queue more work) while a call is in flight.
 */
import { chooseDecodeBatch, chooseNextCall, choosePrefillBatch, type DecoderCall, type DecodeShape } from "./batch-policy.ts";
import type { BatchExecutor, DecodeRowSpec, PrefillResult, PrefillRow, StepCache } from "./batch-executor.ts";
import type { KvView } from "./kv.ts";
import { finishReason, keepsToken, type FinishReason, type StopState } from "./stops.ts";

export interface SequenceSpec extends DecodeRowSpec {
  /** Cache holding everything before `pending`. */
  kv: KvView;
  /** Tokens kept so far (pending included). */
  tokens: number[];
  /** Sum of the kept tokens' log-probabilities so far (pending included). */
  logProb: number;
  stop: StopState;
  /** Largest cache length the model allows (its context window). */
  maxLength: number;
}

export interface SequenceOutcome {
  /** Kept tokens (no eos, no dropped lookahead). */
  tokens: number[];
  /** Every sampled token, kept or not. */
  sampled: number;
  /** Sum of the kept tokens' log-probabilities. */
  logProb: number;
  reason: FinishReason;
}

export interface SchedulerOptions {
  /** Most sequences in one decode call. */
  maxBatch: number;
  /** Most batch slots (rows × (past + new)) in one prefill call; a single larger row runs alone. */
  maxPrefillSlots: number;
}

interface QueuedPrefill {
  row: PrefillRow;
  resolve: (r: PrefillResult) => void;
  reject: (e: unknown) => void;
}

interface ActiveRow {
  spec: SequenceSpec;
  kv: KvView;
  length: number;
  sampled: number;
  resolve: (r: SequenceOutcome) => void;
  reject: (e: unknown) => void;
}

const decodeShape = (r: ActiveRow): DecodeShape => ({ length: r.length, maxLength: r.spec.maxLength });

export class Scheduler {
  private prefills: QueuedPrefill[] = [];
  private readonly waiting: ActiveRow[] = [];
  private rows: ActiveRow[] = [];
  /** The last step's cache, while the batch holds the same rows. */
  private stepCache: StepCache | null = null;
  private running = false;
  private lastCall: DecoderCall | null = null;

  constructor(
    private readonly executor: BatchExecutor,
    private readonly options: SchedulerOptions,
  ) {}

  /** Sequences running or waiting to join. */
  get activeSequences(): number {
    return this.rows.length + this.waiting.length;
  }

  prefill(rows: readonly PrefillRow[]): Promise<PrefillResult[]> {
    const promises = rows.map(
      (row) =>
        new Promise<PrefillResult>((resolve, reject) => {
          // Checked before queueing, so that a bad row fails alone and not the batch it would join.
          this.executor.checkPrefillRow(row);
          row.base?.store.retain();
          this.prefills.push({ row, resolve, reject });
        }),
    );
    this.kick();
    return Promise.all(promises);
  }

  decode(specs: readonly SequenceSpec[]): Promise<SequenceOutcome[]> {
    const promises = specs.map(
      (spec) =>
        new Promise<SequenceOutcome>((resolve, reject) => {
          spec.kv.store.retain();
          this.waiting.push({ spec, kv: spec.kv, length: spec.kv.length, sampled: 0, resolve, reject });
        }),
    );
    this.kick();
    return Promise.all(promises);
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    // Start on a later tick so that callers queueing work in the same tick share the first call.
    setImmediate(() => {
      this.loop().catch(() => undefined);
    });
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        const call = chooseNextCall(this.prefills.length > 0, this.rows.length > 0 || this.waiting.length > 0, this.lastCall);
        if (call === null) break;
        this.lastCall = call;
        if (call === "prefill") {
          await this.runPrefill();
          continue;
        }
        try {
          await this.step();
        } catch (err) {
          for (const r of this.rows) this.fail(r, err);
          this.rows = [];
          this.stepCache?.release();
          this.stepCache = null;
        }
      }
    } finally {
      this.running = false;
    }
    if (this.prefills.length > 0 || this.waiting.length > 0) this.kick();
  }

  // -------------------------------------------------------------------------
  // Prefill

  private takePrefillBatch(): QueuedPrefill[] {
    const chosen = choosePrefillBatch(
      this.prefills.map((q) => ({ past: q.row.base?.length ?? 0, fresh: q.row.ids.length })),
      this.options.maxPrefillSlots,
    );
    const batch = chosen.map((i) => this.prefills[i]!);
    const taken = new Set(chosen);
    this.prefills = this.prefills.filter((_, i) => !taken.has(i));
    return batch;
  }

  private async runPrefill(): Promise<void> {
    const batch = this.takePrefillBatch();
    try {
      await this.runPrefillBatch(batch);
    } finally {
      for (const b of batch) b.row.base?.store.release();
    }
  }

  private async runPrefillBatch(batch: readonly QueuedPrefill[]): Promise<void> {
    try {
      const results = await this.executor.prefill(batch.map((b) => b.row));
      batch.forEach((b, i) => {
        b.resolve(results[i]!);
      });
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // Run the rows one by one, so that only a row that fails on its own fails.
      for (const b of batch) {
        try {
          b.resolve((await this.executor.prefill([b.row]))[0]!);
        } catch (rowErr) {
          b.reject(rowErr);
        }
      }
    }
  }

  // -------------------------------------------------------------------------
  // Decode

  private finish(row: ActiveRow, reason: FinishReason): void {
    row.kv.store.release();
    row.resolve({ tokens: row.spec.tokens, sampled: row.sampled, logProb: row.spec.logProb, reason });
  }

  private async step(): Promise<void> {
    const plan = chooseDecodeBatch(this.rows.map(decodeShape), this.waiting.map(decodeShape), this.options.maxBatch);
    const looked = this.waiting.splice(0, plan.join.length + plan.endWaiting.length);
    for (const i of plan.endRunning) this.finish(this.rows[i]!, "context");
    for (const i of plan.endWaiting) this.finish(looked[i]!, "context");
    const unchanged = plan.endRunning.length === 0 && plan.join.length === 0;
    const last = this.stepCache;
    this.stepCache = null;
    this.rows = [...plan.stay.map((i) => this.rows[i]!), ...plan.join.map((i) => looked[i]!)];
    const rows = this.rows;
    if (rows.length === 0) {
      last?.release();
      return;
    }

    const before = rows.map((r) => r.kv.store);
    let step: Awaited<ReturnType<BatchExecutor["decode"]>>;
    try {
      step = await this.executor.decode(rows, unchanged ? last : null);
    } finally {
      last?.release();
    }
    const { samples, cache } = step;
    // Each row's cache is now its row of `cache`.
    for (const r of rows) r.kv.store.retain();
    for (const s of before) s.release();
    const survivors: ActiveRow[] = [];
    rows.forEach((r, b) => {
      const sample = samples[b]!;
      if ("error" in sample) {
        this.fail(r, sample.error);
        return;
      }
      r.sampled++;
      const spec = r.spec;
      const outcome = spec.stop.advance(sample.token);
      if (keepsToken(outcome)) {
        spec.tokens.push(sample.token);
        spec.logProb += sample.logProb;
      }
      if (outcome === "continue") {
        spec.pending = sample.token;
        survivors.push(r);
      } else {
        this.finish(r, finishReason(outcome));
      }
    });
    this.rows = survivors;
    if (survivors.length === rows.length) this.stepCache = cache;
    else cache.release();
  }

  private fail(row: ActiveRow, err: unknown): void {
    row.kv.store.release();
    row.reject(err);
  }
}
