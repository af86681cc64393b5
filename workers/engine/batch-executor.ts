/**
 * Runs the decoder calls the scheduler chose, through the ModelRunner, and samples:
 *
 * * Prefill: rows that continue a cached KV (or start empty) with a run of new tokens, in one
 *   call — past left-padded, new tokens right-padded — each row getting back its own compact KV
 *   and the logits at its last token.
 * * Decode: one token for each row, with left-padded past KV, attention masks and per-row
 *   position ids (cache length + the row's offset), then one token sampled per row. The call's
 *   `present` comes back as a step cache that the next step of the same rows takes as its `past`
 *   untouched.
 */
import type { Rng } from "../../shared/core/random.ts";
import { countDecodeStep, countSampledToken, type TokenPurpose } from "./counters.ts";
import { crossBatch, type CrossBatch, type CrossRow } from "./cross.ts";
import { allocFloat, wholeView, type FloatArray, type KvStore, type KvView } from "./kv.ts";
import { decodePositionIds } from "./positions.ts";
import type { DecoderOutput, ModelRunner } from "./runner.ts";
import type { Sampler, SamplingParams } from "./sampler.ts";

export interface PrefillRow {
  /** Cache to continue (its length is the row's past), or null to start from nothing. */
  base: KvView | null;
  /** New token ids (at least one). */
  ids: readonly number[];
  /** Features [n, hidden] for the image tokens in `ids`, taken in order starting at feature `first`. */
  image?: { features: FloatArray; first: number } | undefined;
  /**
   * Position ids of `ids`, one array per axis of the decoder's position_ids (the item's
   * PositionRule); when absent, counted on from the cache length on every axis.
   */
  positions?: readonly (readonly number[])[] | undefined;
  /** Return the row's KV (base + new tokens) as its own cache. */
  keepKv: boolean;
  /** Indices into `ids` whose logits are wanted besides the last (a verifier's step markers). */
  logitsAt?: readonly number[] | undefined;
  /** mllama: the item's cross-attention states and where the row's image token is. */
  cross?: CrossRow | undefined;
}

export interface PrefillResult {
  /** The row's own cache (a whole view of a one-row store whose reference is the caller's), when kept. */
  kv: KvView | null;
  /** Logits at the row's last new token. */
  logits: Float32Array;
  /** Logits at each of the row's `logitsAt` indices. */
  at: Float32Array[];
}

/** Hooks for metrics (e.g. stagebeam_decode_batch_size); exceptions thrown by them are ignored. */
export interface EngineObserver {
  /** After every batched decode call: sequences in the batch and the call's seconds. */
  decodeStep?(rows: number, seconds: number): void;
  /** After every prefill call: rows, real tokens and the call's seconds. */
  prefill?(rows: number, tokens: number, seconds: number): void;
}

/** What a decode step needs of a sequence besides its cache. */
export interface DecodeRowSpec {
  /** Last kept token, not yet in the cache. */
  pending: number;
  sampling: SamplingParams;
  rng: Rng;
  /** Which counter its sampled tokens go to. */
  purpose: TokenPurpose;
  /** A step's position is the cache length + this, on every axis (the item's PositionRule.decodeOffset). */
  positionOffset: number;
  /** mllama: the item's cross-attention states and where the sequence's image token is. */
  cross?: CrossRow | undefined;
}

/** A sequence in a decode step. */
export interface DecodeRow {
  /** Everything before `spec.pending`; the step moves it on to include `pending`. */
  kv: KvView;
  /** Cached positions; the step adds one. */
  length: number;
  readonly spec: DecodeRowSpec;
}

/** A decode step's `present`, to be the next step's `past` while the batch holds the same rows. */
export type StepCache = KvStore;

/** The token sampled for a row with the model's log-probability of it, or why sampling failed (which fails that row only). */
export type RowSample = { token: number; logProb: number } | { error: unknown };

export interface BatchExecutorOptions {
  imageTokenId: number;
  observer?: EngineObserver | undefined;
}

export class BatchExecutor {
  constructor(
    private readonly runner: ModelRunner,
    private readonly sampler: Sampler,
    private readonly options: BatchExecutorOptions,
  ) {}

  /** Throws when a row cannot run: no new tokens, position ids that do not fit, or more image tokens than image features. */
  checkPrefillRow(row: PrefillRow): void {
    if (row.ids.length === 0) throw new Error("prefill row without new tokens");
    if (row.logitsAt?.some((t) => !Number.isInteger(t) || t < 0 || t >= row.ids.length)) {
      throw new Error(
        `prefill row of ${row.ids.length} tokens asks for logits at [${row.logitsAt}]; expected indices of its tokens`,
      );
    }
    const axes = this.runner.contract.positionAxes;
    if (
      row.positions !== undefined &&
      (row.positions.length !== axes || row.positions.some((p) => p.length !== row.ids.length))
    ) {
      throw new Error(
        `prefill row of ${row.ids.length} tokens has position ids [${row.positions.map((p) => p.length)}]; expected ${axes} x ${row.ids.length}`,
      );
    }
    let images = 0;
    for (const id of row.ids) if (id === this.options.imageTokenId) images++;
    if (images > 0) {
      const available = row.image === undefined ? 0 : row.image.features.length / this.runner.hidden - row.image.first;
      if (images > available) throw new Error(`prefill row has ${images} image tokens but ${available} image features`);
    }
  }

  /** The call's cross inputs when the decoder takes them (every row must carry its item's), else null. */
  private async cross(
    rows: readonly (CrossRow | undefined)[],
    starts: readonly number[],
    lengths: readonly number[],
    steps: number,
  ): Promise<CrossBatch | null> {
    const contract = this.runner.contract.cross;
    if (contract === null) return null;
    if (rows.some((r) => r === undefined))
      throw new Error("a row without cross-attention states in a decoder call that needs them");
    return crossBatch(this.runner.kv, contract.maxTiles, rows as CrossRow[], starts, lengths, steps);
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

  async prefill(rows: readonly PrefillRow[]): Promise<PrefillResult[]> {
    const runner = this.runner;
    const { hidden: d, vocab } = runner;
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
    const axes = runner.contract.positionAxes;
    const positions = new BigInt64Array(axes * B * T);
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
      for (let a = 0; a < axes; a++) {
        const given = r.positions?.[a];
        for (let t = 0; t < tb; t++) positions[(a * B + b) * T + t] = BigInt(given === undefined ? pb + t : given[t]!);
      }
      runner.counters.decoderTokens += tb;
      runner.counters.prefillTokens += tb;
    });
    const cache =
      P > 0
        ? await runner.kv.gather(
            rows.map((r) => (r.base !== null && r.base.length > 0 ? r.base : null)),
            P,
          )
        : null;
    // New tokens are right-padded: the earliest step whose logits are read is the shortest row's
    // last token, or a row's first `logitsAt`.
    const keepLogits = T - Math.min(...rows.map((r) => Math.min(r.ids.length - 1, ...(r.logitsAt ?? []))));
    let cross: CrossBatch | null = null;
    const started = performance.now();
    let out: DecoderOutput;
    try {
      cross = await this.cross(
        rows.map((r) => r.cross),
        rows.map((r) => r.base?.length ?? 0),
        rows.map((r) => r.ids.length),
        T,
      );
      out = await runner.forward({
        rows: B,
        steps: T,
        past: P,
        embeds,
        mask,
        positions,
        cache,
        keepLogits,
        itemInputs: cross?.inputs,
        crossMask: cross?.mask,
      });
    } finally {
      cache?.release();
      cross?.release();
    }
    this.observe((o) => o.prefill?.(B, flat.length, (performance.now() - started) / 1000));
    const K = out.logitSteps;
    const present = out.present;
    const kept: KvStore[] = [];
    try {
      return await Promise.all(
        rows.map(async (r, b) => {
          const pb = r.base?.length ?? 0;
          const tb = r.ids.length;
          const rowAt = (t: number) => {
            const off = (b * K + t - (T - K)) * vocab;
            return out.logits.slice(off, off + vocab);
          };
          const logits = rowAt(tb - 1);
          let kv: KvView | null = null;
          if (r.keepKv) {
            const own = await runner.kv.extract({ store: present, row: b, start: P - pb, length: pb + tb });
            kept.push(own);
            kv = wholeView(own);
          }
          return { kv, logits, at: (r.logitsAt ?? []).map(rowAt) };
        }),
      );
    } catch (err) {
      for (const s of kept) s.release();
      throw err;
    } finally {
      present.release();
    }
  }

  /**
   * One decode step: every row advances by its pending token and gets one sampled token. `past`
   * is the step cache of the previous step when the batch holds the same rows in the same order
   * (fed back untouched); otherwise, null, the rows' caches are gathered into a new left-padded one.
   */
  async decode(rows: readonly DecodeRow[], past: StepCache | null): Promise<{ samples: RowSample[]; cache: StepCache }> {
    const runner = this.runner;
    const { vocab } = runner;
    const B = rows.length;
    let P: number;
    let cache: KvStore | null;
    if (past === null) {
      P = Math.max(...rows.map((r) => r.length));
      cache =
        P > 0
          ? await runner.kv.gather(
              rows.map((r) => (r.length > 0 ? r.kv : null)),
              P,
            )
          : null;
    } else {
      P = past.total;
      cache = past;
    }

    const embeds = await runner.embedIds(rows.map((r) => r.spec.pending));
    const mask = new BigInt64Array(B * (P + 1));
    rows.forEach((r, b) => {
      mask.fill(1n, b * (P + 1) + P - r.length, (b + 1) * (P + 1));
    });
    const positions = decodePositionIds(
      rows.map((r) => ({ length: r.length, offset: r.spec.positionOffset })),
      runner.contract.positionAxes,
    );

    let cross: CrossBatch | null = null;
    const started = performance.now();
    let out: DecoderOutput;
    try {
      cross = await this.cross(
        rows.map((r) => r.spec.cross),
        rows.map((r) => r.length),
        rows.map(() => 1),
        1,
      );
      out = await runner.forward({
        rows: B,
        steps: 1,
        past: P,
        embeds,
        mask,
        positions,
        cache,
        itemInputs: cross?.inputs,
        crossMask: cross?.mask,
      });
    } finally {
      // A gathered batch served this call only; a step cache is its holder's.
      if (past === null) cache?.release();
      cross?.release();
    }
    this.observe((o) => o.decodeStep?.(B, (performance.now() - started) / 1000));
    countDecodeStep(runner.counters, B);

    const samples = rows.map((r, b): RowSample => {
      r.kv = { store: out.present, row: b, start: P - r.length, length: r.length + 1 };
      r.length++;
      try {
        const token = this.sampler.sample(out.logits, b * vocab, r.spec.sampling, r.spec.rng);
        countSampledToken(runner.counters, r.spec.purpose);
        return { token, logProb: this.sampler.logProb(out.logits, b * vocab, token) };
      } catch (error) {
        return { error };
      }
    });
    return { samples, cache: out.present };
  }
}
