/**
 * Two ways to run the same work, with the same sampling streams:
 *
 * * `CachedBackend` (the engine's own): image encoded once per item; the prompt's KV computed
 *   once and every accepted prefix encoded once (item prefix cache); all candidates of all
 *   items in flight decoded together in batched decoder calls; stops decided per token.
 * * `ReferenceBackend` (the paper's code, for benchmarks): one candidate at a time, each
 *   re-encoding the image and the whole prompt, decoding the whole text after every token to
 *   test the stop rule.
 */
import type { Stop } from "../../shared/core/search/types.ts";
import { countDecodeStep, countSampledToken, type TokenPurpose } from "./counters.ts";
import { crossBatch, type CrossRow } from "./cross.ts";
import { commonPrefix, type ItemContext } from "./item.ts";
import { truncateView, type FloatArray, type ItemDecoderInputs, type KvStore, type KvView } from "./kv.ts";
import type { PrefillResult } from "./batch-executor.ts";
import { decodePositionIds } from "./positions.ts";
import type { ModelRunner } from "./runner.ts";
import { rngForKey, type Sampler, type SamplingParams } from "./sampler.ts";
import type { Scheduler, SequenceSpec } from "./scheduler.ts";
import { finishReason, keepsToken, keptText, TextStopState, type FinishReason, type StopTables } from "./stops.ts";
import type { EngineTokenizer } from "./tokenizer.ts";

export interface Continuation {
  /** Everything before the continuation: prompt ids (+ accepted prefix ids). */
  ids: readonly number[];
  stop: Stop;
  maxTokens: number;
  /** The only source of the sequence's random stream. */
  sampleKey: string;
  purpose: TokenPurpose;
  /** Keep the KV of `ids` in the item's prefix cache (accepted prefixes are asked for again). */
  cache: boolean;
  /** This sequence's own sampling (a greedy request), else the call's. */
  sampling?: SamplingParams;
}

export interface ContinuationResult {
  /** Kept tokens: no eos, no dropped lookahead. */
  tokens: number[];
  /** Decoded kept tokens, as they continue `ids`, ending at the stop point (which may lie inside the last token). */
  text: string;
  reason: FinishReason;
  /** Tokens sampled, kept or not. */
  sampled: number;
  /** Sum of the kept tokens' log-probabilities under the model (temperature 1). */
  logProb: number;
}

/** A judge prompt and the answers whose likelihood is read after it. */
export interface ScoredPrompt {
  ids: readonly number[];
  /** Token ids of each answer (at least one each). */
  answers: readonly (readonly number[])[];
}

/** Per answer, the logits each of its tokens is read from: [k] follows the prompt + the answer's first k tokens. */
export type AnswerLogits = Float32Array[][];

/** A sequence read teacher-forced, and the positions whose logits are wanted (ascending, past the prompt). */
export interface ReadSequence {
  ids: readonly number[];
  at: readonly number[];
}

export interface Backend {
  /** Samples continuations of the item's context. */
  continue(ctx: ItemContext, conts: readonly Continuation[], sampling: SamplingParams): Promise<ContinuationResult[]>;
  /**
   * The answers of each prompt, teacher-forced: one forward pass over the prompt and the leading
   * tokens all its answers share (whose logits are all that answers branching only at their last
   * token need), then the tokens of answers that branch earlier on top of it.
   */
  answerLogits(ctx: ItemContext, prompts: readonly ScoredPrompt[]): Promise<AnswerLogits[]>;
  /** The logits at each sequence's `at` positions, one forward pass over each sequence (batched). */
  positionLogits(ctx: ItemContext, sequences: readonly ReadSequence[]): Promise<Float32Array[][]>;
  /** Prepares a newly opened item (encodes its image and prompt when the backend caches them). */
  open(ctx: ItemContext): Promise<void>;
}

export interface BackendParts {
  runner: ModelRunner;
  scheduler: Scheduler;
  sampler: Sampler;
  stops: StopTables;
  tokenizer: EngineTokenizer;
  /** Largest cache length (the context window), Infinity when unknown. */
  contextLength: number;
}

/** Shortest run of new tokens worth a shared-prefix cache entry. */
const MIN_SHARED_TOKENS = 16;

/** mllama: a sequence's view of its item's cross-attention states (the image seen from its image token on). */
function crossRow(
  ctx: ItemContext,
  inputs: ItemDecoderInputs | null,
  ids: readonly number[],
  imageId: number,
): CrossRow | undefined {
  if (inputs === null) return undefined;
  const from = ids.indexOf(imageId);
  return { inputs, tiles: ctx.crossTiles, from: from < 0 ? Number.POSITIVE_INFINITY : from };
}

function countImageTokens(ids: readonly number[], end: number, imageId: number): number {
  let n = 0;
  for (let i = 0; i < end; i++) if (ids[i] === imageId) n++;
  return n;
}

/** The answers' leading runs that logits are needed after: each answer's first k tokens, 0 < k < its length, once each. */
function answerPrefixes(answers: readonly (readonly number[])[]): number[][] {
  const runs = new Map<string, number[]>();
  for (const answer of answers) {
    for (let k = 1; k < answer.length; k++) {
      const run = answer.slice(0, k);
      runs.set(run.join(","), run);
    }
  }
  return [...runs.values()];
}

/**
 * The leading tokens every answer shares, short of each answer's last token (` 1` and ` 2` as a
 * Llama-3 vocabulary spells them share the space): they run in the prompt's own row.
 */
function sharedLead(answers: readonly (readonly number[])[]): readonly number[] {
  const first = answers[0] ?? [];
  let n = Math.min(...answers.map((a) => a.length - 1));
  for (const a of answers) n = Math.min(n, commonPrefix(first, a));
  return first.slice(0, Math.max(0, n));
}

/** Lays out `AnswerLogits` from the prompt's last logits and those after each of `prefixes`. */
function readAnswers(
  answers: readonly (readonly number[])[],
  promptLogits: Float32Array,
  prefixes: readonly number[][],
  prefixLogits: readonly Float32Array[],
): AnswerLogits {
  const after = new Map(prefixes.map((run, i) => [run.join(","), prefixLogits[i]!]));
  return answers.map((answer) => answer.map((_, k) => (k === 0 ? promptLogits : after.get(answer.slice(0, k).join(","))!)));
}

// ---------------------------------------------------------------------------

export class CachedBackend implements Backend {
  constructor(private readonly p: BackendParts) {}

  async open(ctx: ItemContext): Promise<void> {
    // The image once per item: features for the image-token families, cross-attention states (mllama) otherwise.
    if (this.p.runner.contract.cross !== null) ctx.decoderInputs = await this.p.runner.encodeCross(ctx.id, ctx.vision!);
    else ctx.features = await this.p.runner.encodeImages(ctx.id, ctx.vision!, ctx.imageTokenCount);
    ctx.vision = null; // the features (or states) are all that is needed from here on
    await ctx.cache.getOrCreate(ctx.promptIds, async () => {
      const [r] = await this.p.scheduler.prefill([
        {
          base: null,
          ids: ctx.promptIds,
          image: ctx.features === null ? undefined : { features: ctx.features, first: 0 },
          positions: ctx.positions.span(ctx.promptIds, 0),
          keepKv: true,
          cross: crossRow(ctx, ctx.decoderInputs, ctx.promptIds, this.p.tokenizer.imageTokenId),
        },
      ]);
      return { ids: ctx.promptIds, kv: r!.kv!, logits: r!.logits, pinned: true };
    });
  }

  /**
   * KV + last logits of `ids` (and the logits at the positions `at`), continuing the cached entry
   * with the longest common prefix.
   */
  private async extend(
    ctx: ItemContext,
    ids: readonly number[],
    keepKv: boolean,
    at: readonly number[] = [],
  ): Promise<{ kv: KvView | null; logits: Float32Array; at: Float32Array[] }> {
    const best = ctx.cache.best(ids);
    // At least the last token (and every position read) is run again: their logits are what the caller needs.
    const reuse = best === null ? 0 : Math.min(best.common, ids.length - 1, ...at);
    const base: KvView | null = best === null || reuse === 0 ? null : truncateView(best.entry.kv, reuse);
    const imageId = this.p.tokenizer.imageTokenId;
    const fresh = ids.slice(reuse);
    const needsImage = fresh.includes(imageId) && ctx.decoderInputs === null;
    if (needsImage && ctx.features === null) throw new Error(`item ${ctx.id}: image features are missing`);
    this.p.runner.counters.cachedTokens += reuse;
    const [r] = await this.p.scheduler.prefill([
      {
        base,
        ids: fresh,
        image: needsImage ? { features: ctx.features!, first: countImageTokens(ids, reuse, imageId) } : undefined,
        positions: ctx.positions.span(ids, reuse),
        keepKv,
        logitsAt: at.map((p) => p - reuse),
        cross: crossRow(ctx, ctx.decoderInputs, ids, imageId),
      },
    ]);
    return r!;
  }

  /**
   * When the sequences of one call share a prefix longer than anything cached — the judge
   * prompts of a tournament round share the image, question, instructions and hint — that
   * prefix is encoded once, as a cache entry the next round and the other judge calls reuse.
   */
  private async shareCommonPrefix(ctx: ItemContext, sequences: readonly (readonly number[])[]): Promise<void> {
    if (sequences.length < 2) return;
    const first = sequences[0]!;
    // Each sequence still runs at least its last token (its logits are what the caller needs).
    let shared = first.length - 1;
    for (const s of sequences) shared = Math.min(shared, commonPrefix(first, s), s.length - 1);
    const cached = ctx.cache.best(first)?.common ?? 0;
    if (shared - cached < MIN_SHARED_TOKENS) return;
    const ids = first.slice(0, shared);
    await ctx.cache.getOrCreate(ids, async () => {
      const r = await this.extend(ctx, ids, true);
      return { ids, kv: r.kv!, logits: r.logits, pinned: false };
    });
  }

  async answerLogits(ctx: ItemContext, prompts: readonly ScoredPrompt[]): Promise<AnswerLogits[]> {
    await this.shareCommonPrefix(
      ctx,
      prompts.map((p) => p.ids),
    );
    const out = await Promise.all(
      prompts.map(async (prompt) => {
        const prefixes = answerPrefixes(prompt.answers);
        // The answers' shared lead runs in the prompt's row, its logits read at each of its
        // positions; only answers that branch after it need rows of their own, on the row's KV.
        const lead = sharedLead(prompt.answers);
        const branches = prefixes.filter((run) => run.length > lead.length);
        const ids = [...prompt.ids, ...lead];
        const head = await this.extend(
          ctx,
          ids,
          branches.length > 0,
          lead.map((_, k) => prompt.ids.length - 1 + k),
        );
        const afterLead = (k: number) => (k === lead.length ? head.logits : head.at[k]!);
        let rows: PrefillResult[] = [];
        try {
          if (branches.length > 0) {
            rows = await this.p.scheduler.prefill(
              branches.map((run) => ({
                base: head.kv!,
                ids: run.slice(lead.length),
                positions: ctx.positions.span([...ids, ...run.slice(lead.length)], ids.length),
                keepKv: false,
                cross: crossRow(ctx, ctx.decoderInputs, prompt.ids, this.p.tokenizer.imageTokenId),
              })),
            );
          }
        } finally {
          head.kv?.store.release();
        }
        const branchLogits = new Map(branches.map((run, i) => [run, rows[i]!.logits]));
        return readAnswers(
          prompt.answers,
          afterLead(0),
          prefixes,
          prefixes.map((run) => branchLogits.get(run) ?? afterLead(run.length)),
        );
      }),
    );
    this.p.runner.counters.judgeScorePasses += prompts.length;
    return out;
  }

  async positionLogits(ctx: ItemContext, sequences: readonly ReadSequence[]): Promise<Float32Array[][]> {
    // The candidates of a step share the item's prompt and the accepted text, up to their first read position.
    await this.shareCommonPrefix(
      ctx,
      sequences.map((s) => s.ids.slice(0, (s.at[0] ?? s.ids.length - 1) + 1)),
    );
    const out = await Promise.all(sequences.map(async (s) => (await this.extend(ctx, s.ids, false, s.at)).at));
    this.p.runner.counters.verifyPasses += sequences.length;
    return out;
  }

  async continue(ctx: ItemContext, conts: readonly Continuation[], sampling: SamplingParams): Promise<ContinuationResult[]> {
    const { sampler, stops, tokenizer, runner, contextLength } = this.p;
    // One context per distinct ids: the candidates of a step share their prefix.
    const groups = new Map<string, { ids: readonly number[]; cache: boolean }>();
    for (const c of conts) {
      const key = c.ids.join(",");
      const g = groups.get(key);
      if (g === undefined) groups.set(key, { ids: c.ids, cache: c.cache });
      else g.cache ||= c.cache;
    }
    await this.shareCommonPrefix(
      ctx,
      [...groups.values()].map((g) => g.ids),
    );
    const contexts = new Map<string, Promise<{ kv: KvView; logits: Float32Array }>>();
    for (const [key, g] of groups) {
      contexts.set(
        key,
        g.cache
          ? ctx.cache.getOrCreate(g.ids, async () => {
              const r = await this.extend(ctx, g.ids, true);
              return { ids: g.ids, kv: r.kv!, logits: r.logits, pinned: false };
            })
          : this.extend(ctx, g.ids, true).then((r) => ({ kv: r.kv!, logits: r.logits })),
      );
    }

    const results: (ContinuationResult | null)[] = conts.map(() => null);
    const specs: SequenceSpec[] = [];
    const specIndex: number[] = [];
    await Promise.all(
      conts.map(async (c, i) => {
        const { kv, logits } = await contexts.get(c.ids.join(","))!;
        const rng = rngForKey(c.sampleKey);
        const stop = stops.state(c.stop, c.maxTokens);
        const token = sampler.sample(logits, 0, c.sampling ?? sampling, rng);
        countSampledToken(runner.counters, c.purpose);
        const logProb = sampler.logProb(logits, 0, token);
        const outcome = stop.advance(token);
        if (outcome === "continue") {
          // Held until the scheduler holds it (a cache entry may be evicted meanwhile).
          kv.store.retain();
          specs.push({
            kv,
            pending: token,
            tokens: [token],
            logProb,
            stop,
            sampling: c.sampling ?? sampling,
            rng,
            maxLength: contextLength,
            purpose: c.purpose,
            positionOffset: ctx.positions.decodeOffset(c.ids),
            cross: crossRow(ctx, ctx.decoderInputs, c.ids, tokenizer.imageTokenId),
          });
          specIndex.push(i);
          return;
        }
        const tokens = keepsToken(outcome) ? [token] : [];
        results[i] = {
          tokens,
          text: keptText(tokenizer.decodeContinuation(c.ids.at(-1) ?? null, tokens), stop),
          reason: finishReason(outcome),
          sampled: 1,
          logProb: tokens.length > 0 ? logProb : 0,
        };
      }),
    );
    // The contexts not kept in the prefix cache are held by the decoding sequences from here on.
    const decoding = this.p.scheduler.decode(specs);
    for (const spec of specs) spec.kv.store.release();
    for (const [key, g] of groups) if (!g.cache) (await contexts.get(key)!).kv.store.release();
    const outcomes = await decoding;
    outcomes.forEach((o, j) => {
      const i = specIndex[j]!;
      const c = conts[i]!;
      results[i] = {
        tokens: o.tokens,
        text: keptText(tokenizer.decodeContinuation(c.ids.at(-1) ?? null, o.tokens), specs[j]!.stop),
        reason: o.reason,
        sampled: o.sampled + 1,
        logProb: o.logProb,
      };
    });
    return results as ContinuationResult[];
  }
}

// ---------------------------------------------------------------------------

/** The reference work pattern: everything sequential, nothing reused. */
export class ReferenceBackend implements Backend {
  constructor(private readonly p: BackendParts) {}

  async open(): Promise<void> {
    // The reference keeps nothing between candidates.
  }

  /**
   * Re-encodes the image and runs the whole sequence, as the reference does for every candidate.
   * mllama's cross-attention states come back (the caller's reference) only when `keepCross`.
   */
  private async fullPass(
    ctx: ItemContext,
    ids: readonly number[],
    keepKv: boolean,
    at: readonly number[] = [],
    keepCross = false,
  ): Promise<{ kv: KvView | null; logits: Float32Array; at: Float32Array[]; cross: CrossRow | undefined }> {
    const { runner, tokenizer } = this.p;
    let image: { features: FloatArray; first: number } | undefined;
    let cross: CrossRow | undefined;
    if (runner.contract.cross !== null)
      cross = crossRow(ctx, await runner.encodeCross(ctx.id, ctx.vision!), ids, tokenizer.imageTokenId);
    else image = { features: await runner.encodeImages(ctx.id, ctx.vision!, ctx.imageTokenCount), first: 0 };
    try {
      const [r] = await this.p.scheduler.prefill([
        { base: null, ids, image, positions: ctx.positions.span(ids, 0), keepKv, logitsAt: at, cross },
      ]);
      return { ...r!, cross: keepCross ? cross : undefined };
    } finally {
      if (!keepCross) cross?.inputs.store.release();
    }
  }

  async positionLogits(ctx: ItemContext, sequences: readonly ReadSequence[]): Promise<Float32Array[][]> {
    const out: Float32Array[][] = [];
    for (const s of sequences) {
      out.push((await this.fullPass(ctx, s.ids, false, s.at)).at);
      this.p.runner.counters.verifyPasses++;
    }
    return out;
  }

  async answerLogits(ctx: ItemContext, prompts: readonly ScoredPrompt[]): Promise<AnswerLogits[]> {
    const out: AnswerLogits[] = [];
    for (const prompt of prompts) {
      const head = (await this.fullPass(ctx, prompt.ids, false)).logits;
      const prefixes = answerPrefixes(prompt.answers);
      const after: Float32Array[] = [];
      for (const run of prefixes) after.push((await this.fullPass(ctx, [...prompt.ids, ...run], false)).logits);
      out.push(readAnswers(prompt.answers, head, prefixes, after));
      this.p.runner.counters.judgeScorePasses++;
    }
    return out;
  }

  async continue(ctx: ItemContext, conts: readonly Continuation[], sampling: SamplingParams): Promise<ContinuationResult[]> {
    const out: ContinuationResult[] = [];
    for (const c of conts) out.push(await this.one(ctx, c, sampling));
    return out;
  }

  private async one(ctx: ItemContext, c: Continuation, sampling: SamplingParams): Promise<ContinuationResult> {
    const { runner, sampler, stops, tokenizer, contextLength } = this.p;
    const first = await this.fullPass(ctx, c.ids, true, [], true);
    let logits = first.logits;
    let cache: KvStore = first.kv!.store;
    let length = c.ids.length;
    const rng = rngForKey(c.sampleKey);
    const eos = stops.table({ kind: "end" });
    const anchor = c.ids.at(-1) ?? null;
    const offset = ctx.positions.decodeOffset(c.ids);
    // The reference's stop check decodes everything generated so far after every token.
    const stop = new TextStopState(
      c.stop,
      c.maxTokens,
      (t) => eos[t] !== 0,
      (tokens) => tokenizer.decodeContinuation(anchor, tokens),
    );
    let sampled = 0;
    let reason: FinishReason;
    const logProbs: number[] = [];
    try {
      for (;;) {
        const token = sampler.sample(logits, 0, c.sampling ?? sampling, rng);
        logProbs.push(sampler.logProb(logits, 0, token));
        sampled++;
        countSampledToken(runner.counters, c.purpose);
        const outcome = stop.advance(token);
        if (outcome !== "continue") {
          reason = finishReason(outcome);
          break;
        }
        if (length + 1 > contextLength) {
          reason = "context";
          break;
        }
        const embeds = await runner.embedIds([token]);
        const mask = new BigInt64Array(length + 1).fill(1n);
        const positions = decodePositionIds([{ length, offset }], runner.contract.positionAxes);
        const cross =
          first.cross && (await crossBatch(runner.kv, runner.contract.cross!.maxTiles, [first.cross], [length], [1], 1));
        const o = await runner.forward({
          rows: 1,
          steps: 1,
          past: length,
          embeds,
          mask,
          positions,
          cache,
          itemInputs: cross?.inputs,
          crossMask: cross?.mask,
        });
        countDecodeStep(runner.counters, 1);
        logits = o.logits;
        cache.release();
        cache = o.present;
        length++;
      }
    } finally {
      cache.release();
      first.cross?.inputs.store.release();
    }
    const tokens = stop.tokens;
    // Kept tokens are the sampled ones less a dropped last one (eos, a sentence's lookahead).
    const logProb = logProbs.slice(0, tokens.length).reduce((sum, x) => sum + x, 0);
    return { tokens, text: keptText(tokenizer.decodeContinuation(anchor, tokens), stop), reason, sampled, logProb };
  }
}
