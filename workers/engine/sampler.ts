/**
 * Token sampling: greedy, or temperature → top-k → top-p (the order of Hugging Face's logits
 * warpers). A sequence's random stream comes only from its sample key, one draw per sampled
 * token, so the tokens it gets do not depend on which batch or worker runs it.
 */
import { createRng, type Rng } from "../../shared/core/random.ts";
import { EngineRequestError } from "./errors.ts";
import type { GenerationDefaults } from "./model-folder.ts";

export interface SamplingParams {
  /** Pick the most likely token (ties: the lowest id); no random draw. */
  greedy: boolean;
  /** > 0; 0 means greedy. */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 keeps every token. */
  topP: number;
  /** Keep only the k most likely tokens; 0 keeps every token. */
  topK: number;
}

/** The reference implementation's sampling: temperature 0.6, top-p 0.9. */
export const REFERENCE_SAMPLING: SamplingParams = { greedy: false, temperature: 0.6, topP: 0.9, topK: 0 };

export function samplingFromGeneration(gen: GenerationDefaults): SamplingParams {
  return { greedy: !gen.doSample || gen.temperature === 0, temperature: gen.temperature, topP: gen.topP, topK: gen.topK };
}

/** Fills in and checks sampling parameters; a bad value names the field and what was expected. */
export function resolveSampling(partial: Partial<SamplingParams> | undefined, defaults: SamplingParams): SamplingParams {
  const p = { ...defaults, ...partial };
  const bad = (field: string, what: string, got: unknown) =>
    new EngineRequestError(`sampling.${field} must be ${what}, got ${JSON.stringify(got)}`);
  if (typeof p.greedy !== "boolean") throw bad("greedy", "true or false", p.greedy);
  if (!Number.isFinite(p.temperature) || p.temperature < 0) throw bad("temperature", "a number >= 0", p.temperature);
  if (!Number.isFinite(p.topP) || p.topP <= 0 || p.topP > 1) throw bad("topP", "a number in (0, 1]", p.topP);
  if (!Number.isInteger(p.topK) || p.topK < 0) throw bad("topK", "an integer >= 0", p.topK);
  return p.temperature === 0 ? { ...p, greedy: true } : p;
}

/** The random stream of one sequence. */
export function rngForKey(sampleKey: string): Rng {
  return createRng(sampleKey);
}

/**
 * Samples from rows of logits. Holds scratch buffers sized to the vocabulary, so one sampler
 * serves every sequence of a batch without allocating per token.
 */
export class Sampler {
  private readonly probs: Float64Array;
  private readonly order: Int32Array;
  private readonly banned: Uint8Array;

  /**
   * @param vocab number of logits per row
   * @param limit ids at or above this are never sampled (the tokenizer cannot decode them)
   * @param banned ids that are never sampled (e.g. the image token)
   */
  constructor(
    readonly vocab: number,
    readonly limit: number = vocab,
    banned: readonly number[] = [],
  ) {
    this.probs = new Float64Array(vocab);
    this.order = new Int32Array(vocab);
    this.banned = new Uint8Array(vocab);
    for (const id of banned) if (id >= 0 && id < vocab) this.banned[id] = 1;
    if (this.limit > vocab) this.limit = vocab;
  }

  /**
   * The model's log-probability of `token` in `logits[offset … offset + vocab)`: a softmax at
   * temperature 1 over the whole row, whatever the sampling settings (what votes compare).
   */
  logProb(logits: ArrayLike<number>, offset: number, token: number): number {
    let max = -Infinity;
    for (let i = 0; i < this.vocab; i++) {
      const v = logits[offset + i]!;
      if (v > max) max = v;
    }
    let sum = 0;
    for (let i = 0; i < this.vocab; i++) sum += Math.exp(logits[offset + i]! - max);
    return logits[offset + token]! - max - Math.log(sum);
  }

  /** Samples one id from `logits[offset … offset + vocab)`. */
  sample(logits: ArrayLike<number>, offset: number, params: SamplingParams, rng: Rng): number {
    const n = this.limit;
    const banned = this.banned;
    let max = -Infinity;
    let argmax = -1;
    for (let i = 0; i < n; i++) {
      if (banned[i] === 1) continue;
      const v = logits[offset + i]!;
      if (v > max) {
        max = v;
        argmax = i;
      }
    }
    if (argmax < 0) throw new Error("sampler: every logit is -inf or NaN (or every token is banned)");
    if (params.greedy || params.temperature === 0) return argmax;

    const probs = this.probs;
    const invT = 1 / params.temperature;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const v = logits[offset + i]!;
      // NaN and banned tokens get no mass.
      const p = banned[i] === 1 || !(v > -Infinity) ? 0 : Math.exp((v - max) * invT);
      probs[i] = p;
      total += p;
    }

    // Candidates: every token with p >= cutoff. Lower the cutoff until the candidates surely
    // hold the top-k tokens and the top-p nucleus (everything outside is smaller than all of them).
    const k = params.topK > 0 && params.topK < n ? params.topK : 0;
    const needMass = params.topP < 1 ? params.topP * total : 0;
    const order = this.order;
    let count = 0;
    let cutoff = k === 0 && needMass === 0 ? 0 : 1e-4;
    for (;;) {
      count = 0;
      let mass = 0;
      for (let i = 0; i < n; i++) {
        const p = probs[i]!;
        if (p > 0 && p >= cutoff) {
          order[count++] = i;
          mass += p;
        }
      }
      const enoughK = k === 0 || count >= k;
      const enoughP = mass >= needMass;
      if ((enoughK && enoughP) || cutoff === 0) break;
      cutoff = cutoff < 1e-280 ? 0 : cutoff * 1e-8;
    }

    const cand = order.subarray(0, count);
    cand.sort((a, b) => probs[b]! - probs[a]! || a - b);
    let kept = k > 0 ? Math.min(k, count) : count;
    let keptMass = 0;
    for (let j = 0; j < kept; j++) keptMass += probs[cand[j]!]!;
    if (params.topP < 1) {
      // Keep a token while the mass strictly above it is below top_p (at least one token).
      const target = params.topP * keptMass;
      let above = 0;
      let j = 0;
      while (j < kept && (j === 0 || above < target)) {
        above += probs[cand[j]!]!;
        j++;
      }
      kept = j;
      keptMass = above;
    }

    let u = rng.next() * keptMass;
    for (let j = 0; j < kept; j++) {
      u -= probs[cand[j]!]!;
      if (u < 0) return cand[j]!;
    }
    return cand[kept - 1]!;
  }
}
