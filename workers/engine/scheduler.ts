/**
 * The batcher: every decoder call of the engine goes through here, one at a time.
 *
 * * Prefill: rows that continue a cached KV (or start empty) with a run of new tokens are
 *   batched into one call — past left-padded, new tokens right-padded — and each row gets back
 *   its own compact KV and the logits at its last token.
 * * Decode: sequences from any number of concurrent callers advance together, one token each
 *   per decoder call, with left-padded past KV, attention masks and per-sequence position ids.
 *   While batch membership is unchanged, `present` is fed back as `past` untouched; the batch is
 *   rebuilt (rows copied, padding shrunk) only when sequences finish or join.
 *
 * Prefill and decode calls alternate while both have work, so new items join running batches
 * quickly and running sequences are not starved. `session.run` is async, so callers keep
 * running (and queue more work) while a call is in flight.
 */
import type { Rng } from "../../shared/core/random.ts";
import { countDecodeStep, countSampledToken, type TokenPurpose } from "./counters.ts";
import { gatherRows, extractSeq, allocFloat, type FloatArray, type KvView, type SeqKV } from "./kv.ts";
import type { ModelRunner } from "./runner.ts";
import type { Sampler, SamplingParams } from "./sampler.ts";
import { finishReason, keepsToken, type FinishReason, type StopState } from "./stops.ts";
import type ort from "onnxruntime-node";

export interface PrefillRow {
  /** Cache to continue (its length is the row's past), or null to start from nothing. */
  base: KvView | null;
  /** New token ids (at least one). */
  ids: readonly number[];
  /** Features [n, hidden] for the image tokens in `ids`, taken in order starting at feature `first`. */
  image?: { features: FloatArray; first: number } | undefined;
  /** Return the row's KV (base + new tokens) as its own cache. */
  keepKv: boolean;
}

export interface PrefillResult {
  kv: SeqKV | null;
  /** Logits at the row's last new token. */
  logits: Float32Array;
}

export interface SequenceSpec {
  /** Cache holding everything before `pending`. */
  kv: KvView;
  /** Last kept token, not yet in the cache. */
  pending: number;
  /** Tokens kept so far (pending included). */
  tokens: number[];
  stop: StopState;
  sampling: SamplingParams;
  rng: Rng;
  /** Largest cache length the model allows (its context window). */
  maxLength: number;
  /** Which counter its sampled tokens go to. */
  purpose: TokenPurpose;
}

export interface SequenceOutcome {
  /** Kept tokens (no eos, no dropped lookahead). */
  tokens: number[];
  /** Every sampled token, kept or not. */
  sampled: number;
  reason: FinishReason;
}

/** Hooks for metrics (e.g. stagebeam_decode_batch_size); exceptions thrown by them are ignored. */
export interface EngineObserver {
  /** After every batched decode call: sequences in the batch and the call's seconds. */
  decodeStep?(rows: number, seconds: number): void;
  /** After every prefill call: rows, real tokens and the call's seconds. */
  prefill?(rows: number, tokens: number, seconds: number): void;
}

export interface SchedulerOptions {
  observer?: EngineObserver | undefined;
  /** Most sequences in one decode call. */
  maxBatch: number;
  /** Most batch slots (rows × (past + new)) in one prefill call; a single larger row runs alone. */
  maxPrefillSlots: number;
  imageTokenId: number;
}

/** Most padding a prefill batch may add, as a fraction of its real tokens. */
const MAX_PREFILL_PADDING = 0.25;

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

export class Scheduler {
  private readonly prefills: QueuedPrefill[] = [];
  private readonly waiting: ActiveRow[] = [];
  private rows: ActiveRow[] = [];
  /** past tensors for the current rows, valid while membership is unchanged. */
  private past: ort.Tensor[] | null = null;
  private pastLength = 0;
  private running = false;
  private preferPrefill = true;

  constructor(
    private readonly runner: ModelRunner,
    private readonly sampler: Sampler,
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
          if (row.ids.length === 0) throw new Error("prefill row without new tokens");
          let images = 0;
          for (const id of row.ids) if (id === this.options.imageTokenId) images++;
          if (images > 0) {
            const available = row.image === undefined ? 0 : row.image.features.length / this.runner.hidden - row.image.first;
            if (images > available) throw new Error(`prefill row has ${images} image tokens but ${available} image features`);
          }
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
        const decodeWork = this.rows.length > 0 || this.waiting.length > 0;
        if (this.prefills.length > 0 && (this.preferPrefill || !decodeWork)) {
          this.preferPrefill = false;
          await this.runPrefill();
        } else if (decodeWork) {
          this.preferPrefill = true;
          try {
            await this.step();
          } catch (err) {
            for (const r of this.rows) r.reject(err);
            this.rows = [];
            this.past = null;
          }
        } else {
          break;
        }
      }
    } finally {
      this.running = false;
    }
    if (this.prefills.length > 0 || this.waiting.length > 0) this.kick();
  }

  private observe(call: (o: EngineObserver) => void): void {
    const o = this.options.observer;
    if (o === undefined) return;
    try {
      call(o);
    } catch {
      // Metrics must never stop decoding.
    }
  }

  // -------------------------------------------------------------------------
  // Prefill

  private takePrefillBatch(): QueuedPrefill[] {
    // The oldest row always goes, so no row waits behind a stream of shorter ones; rows of
    // similar length join it while padding (every row is padded to the batch's longest)
    // stays within MAX_PREFILL_PADDING of the real tokens.
    const head = this.prefills.shift()!;
    const batch = [head];
    let maxPast = head.row.base?.length ?? 0;
    let maxNew = head.row.ids.length;
    let realTokens = maxNew;
    const distance = (q: QueuedPrefill) => Math.abs(q.row.ids.length - head.row.ids.length);
    for (const next of [...this.prefills].sort((a, b) => distance(a) - distance(b))) {
      const past = Math.max(maxPast, next.row.base?.length ?? 0);
      const fresh = Math.max(maxNew, next.row.ids.length);
      const rows = batch.length + 1;
      const real = realTokens + next.row.ids.length;
      if (rows * (past + fresh) > this.options.maxPrefillSlots || rows * fresh > (1 + MAX_PREFILL_PADDING) * real) continue;
      batch.push(next);
      maxPast = past;
      maxNew = fresh;
      realTokens = real;
    }
    const taken = new Set(batch);
    this.prefills.splice(0, this.prefills.length, ...this.prefills.filter((q) => !taken.has(q)));
    return batch;
  }

  private async runPrefill(): Promise<void> {
    const batch = this.takePrefillBatch();
    try {
      const results = await this.prefillNow(batch.map((b) => b.row));
      batch.forEach((b, i) => b.resolve(results[i]!));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // Run the rows one by one, so that only a row that fails on its own fails.
      for (const b of batch) {
        try {
          b.resolve((await this.prefillNow([b.row]))[0]!);
        } catch (rowErr) {
          b.reject(rowErr);
        }
      }
    }
  }

  private async prefillNow(rows: readonly PrefillRow[]): Promise<PrefillResult[]> {
    const runner = this.runner;
    const { layout, hidden: d, vocab } = runner;
    const B = rows.length;
    const P = Math.max(...rows.map((r) => r.base?.length ?? 0));
    const T = Math.max(...rows.map((r) => r.ids.length));
    const imageId = this.options.imageTokenId;

    // Embeddings of all new tokens in one lookup, then image features in place of image tokens.
    const flat: number[] = [];
    for (const r of rows) for (const id of r.ids) flat.push(id);
    const emb = await runner.embedIds(flat);
    const embeds = allocFloat(runner.contract.embedType, B * T * d);
    const mask = new BigInt64Array(B * (P + T));
    const positions = new BigInt64Array(B * T);
    let at = 0;
    rows.forEach((r, b) => {
      const pb = r.base?.length ?? 0;
      const tb = r.ids.length;
      embeds.set(emb.subarray(at * d, (at + tb) * d), b * T * d);
      at += tb;
      let feature = r.image?.first ?? 0;
      for (let t = 0; t < tb; t++) {
        if (r.ids[t] !== imageId) continue;
        const f = r.image!.features;
        embeds.set(f.subarray(feature * d, (feature + 1) * d), (b * T + t) * d);
        feature++;
      }
      const m = b * (P + T);
      mask.fill(1n, m + P - pb, m + P + tb);
      for (let t = 0; t < tb; t++) positions[b * T + t] = BigInt(pb + t);
      this.runner.counters.decoderTokens += tb;
      this.runner.counters.prefillTokens += tb;
    });
    const bases: KvView[] = rows.map((r) => r.base ?? { data: [], total: 0, row: 0, start: 0, length: 0 });
    const cache = P > 0 ? gatherRows(layout, bases, P) : null;
    const started = performance.now();
    const out = await runner.forward({ rows: B, steps: T, past: P, embeds, mask, positions, cache });
    this.observe((o) => o.prefill?.(B, flat.length, (performance.now() - started) / 1000));
    return rows.map((r, b) => {
      const pb = r.base?.length ?? 0;
      const tb = r.ids.length;
      const off = (b * T + tb - 1) * vocab;
      const logits = out.logits.slice(off, off + vocab);
      const kv = r.keepKv
        ? extractSeq(layout, { data: out.presentData, total: P + T, row: b, start: P - pb, length: pb + tb })
        : null;
      return { kv, logits };
    });
  }

  // -------------------------------------------------------------------------
  // Decode

  private finish(row: ActiveRow, reason: FinishReason): void {
    row.resolve({ tokens: row.spec.tokens, sampled: row.sampled, reason });
  }

  private async step(): Promise<void> {
    const runner = this.runner;
    const { layout, vocab } = runner;
    let dirty = this.past === null;

    // Rows that cannot take another position end here (context window).
    const fitting = this.rows.filter((r) => {
      if (r.length + 1 <= r.spec.maxLength) return true;
      this.finish(r, "context");
      return false;
    });
    if (fitting.length !== this.rows.length) dirty = true;
    this.rows = fitting;
    while (this.rows.length < this.options.maxBatch && this.waiting.length > 0) {
      const r = this.waiting.shift()!;
      if (r.length + 1 > r.spec.maxLength) {
        this.finish(r, "context");
        continue;
      }
      this.rows.push(r);
      dirty = true;
    }
    const rows = this.rows;
    const B = rows.length;
    if (B === 0) {
      this.past = null;
      return;
    }

    let P: number;
    let cache: readonly (FloatArray | ort.Tensor)[] | null;
    if (dirty) {
      P = Math.max(...rows.map((r) => r.length));
      cache =
        P > 0
          ? gatherRows(
              layout,
              rows.map((r) => r.kv),
              P,
            )
          : null;
    } else {
      P = this.pastLength;
      cache = this.past;
    }

    const embeds = await runner.embedIds(rows.map((r) => r.spec.pending));
    const mask = new BigInt64Array(B * (P + 1));
    const positions = new BigInt64Array(B);
    rows.forEach((r, b) => {
      mask.fill(1n, b * (P + 1) + P - r.length, (b + 1) * (P + 1));
      positions[b] = BigInt(r.length);
    });

    const started = performance.now();
    const out = await runner.forward({ rows: B, steps: 1, past: P, embeds, mask, positions, cache });
    this.observe((o) => o.decodeStep?.(B, (performance.now() - started) / 1000));
    countDecodeStep(runner.counters, B);

    const survivors: ActiveRow[] = [];
    rows.forEach((r, b) => {
      r.kv = { data: out.presentData, total: P + 1, row: b, start: P - r.length, length: r.length + 1 };
      r.length++;
      const spec = r.spec;
      let token: number;
      try {
        token = this.sampler.sample(out.logits, b * vocab, spec.sampling, spec.rng);
      } catch (err) {
        r.reject(err);
        return;
      }
      r.sampled++;
      countSampledToken(runner.counters, spec.purpose);
      const outcome = spec.stop.advance(token);
      if (keepsToken(outcome)) spec.tokens.push(token);
      if (outcome === "continue") {
        spec.pending = token;
        survivors.push(r);
      } else {
        this.finish(r, finishReason(outcome));
      }
    });
    this.rows = survivors;
    if (survivors.length === B) {
      this.past = out.present;
      this.pastLength = P + 1;
    } else {
      this.past = null;
    }
  }
}
