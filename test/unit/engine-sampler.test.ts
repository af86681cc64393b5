import { describe, expect, it } from "vitest";
import { createRng } from "../../shared/core/random.ts";
import { EngineRequestError } from "../../workers/engine/errors.ts";
import {
  resolveSampling,
  rngForKey,
  Sampler,
  samplingFromGeneration,
  type SamplingParams,
} from "../../workers/engine/sampler.ts";

const V = 50;
const SAMPLE: SamplingParams = { greedy: false, temperature: 0.6, topP: 0.9, topK: 0 };

function randomLogits(seed: string, rows = 1): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: rows * V }, () => (rng.next() - 0.5) * 8);
}

/** Logits whose softmax (temperature 1) is exactly `probs`. */
const logitsOf = (probs: number[]) => Float32Array.from(probs, (p) => (p > 0 ? Math.log(p) : -Infinity));

function draw(sampler: Sampler, logits: Float32Array, params: SamplingParams, key: string, n: number): number[] {
  const rng = rngForKey(key);
  return Array.from({ length: n }, () => sampler.sample(logits, 0, params, rng));
}

describe("sampler reproducibility", () => {
  it("gives the same tokens for the same sample key, and different ones for another key", () => {
    const sampler = new Sampler(V);
    const logits = randomLogits("a");
    const a = draw(sampler, logits, SAMPLE, "7/item/SUMMARY/c0", 200);
    const b = draw(new Sampler(V), logits, SAMPLE, "7/item/SUMMARY/c0", 200);
    const c = draw(sampler, logits, SAMPLE, "7/item/SUMMARY/c1", 200);
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
  });

  it("does not depend on how sequences are interleaved in a batch", () => {
    const keys = ["k0", "k1", "k2", "k3"];
    const steps = 60;
    // Each step has a batch of logits rows; row b belongs to sequence b.
    const batches = Array.from({ length: steps }, (_, s) => randomLogits(`step${s}`, keys.length));
    const alone = keys.map((key, b) => {
      const rng = rngForKey(key);
      const sampler = new Sampler(V);
      return batches.map((logits) => sampler.sample(logits.subarray(b * V, (b + 1) * V), 0, SAMPLE, rng));
    });
    // Batched: one sampler for all rows, rows visited in a shuffled order each step.
    const sampler = new Sampler(V);
    const rngs = keys.map(rngForKey);
    const together: number[][] = keys.map(() => []);
    const order = createRng("order");
    for (const logits of batches) {
      for (const b of order.shuffle([0, 1, 2, 3])) together[b]!.push(sampler.sample(logits, b * V, SAMPLE, rngs[b]!));
    }
    expect(together).toEqual(alone);
  });
});

describe("greedy", () => {
  it("picks the largest logit, the lowest id on ties, and draws nothing", () => {
    const sampler = new Sampler(5);
    const rng = createRng("g");
    const greedy = { ...SAMPLE, greedy: true };
    expect(sampler.sample(Float32Array.from([0, 3, 1, 3, -1]), 0, greedy, rng)).toBe(1);
    expect(sampler.sample(Float32Array.from([9, 0, 1, 2, 3, 4, 5]), 2, greedy, rng)).toBe(4);
    expect(rng.next()).toBe(createRng("g").next());
  });

  it("temperature 0 means greedy", () => {
    expect(resolveSampling({ temperature: 0 }, SAMPLE).greedy).toBe(true);
    expect(samplingFromGeneration({ doSample: false, temperature: 0.6, topP: 0.9, topK: 0, maxNewTokens: null }).greedy).toBe(
      true,
    );
  });
});

describe("top-k and top-p masking", () => {
  const probs = [0.05, 0.4, 0.02, 0.25, 0.15, 0.08, 0.05];
  const counts = (tokens: number[]) => {
    const c = new Map<number, number>();
    for (const t of tokens) c.set(t, (c.get(t) ?? 0) + 1);
    return c;
  };

  it("top-k keeps exactly the k most likely tokens, in proportion", () => {
    const sampler = new Sampler(probs.length);
    const params = { greedy: false, temperature: 1, topP: 1, topK: 3 };
    const c = counts(draw(sampler, logitsOf(probs), params, "topk", 20000));
    expect([...c.keys()].sort()).toEqual([1, 3, 4]);
    const mass = 0.4 + 0.25 + 0.15;
    expect(c.get(1)! / 20000).toBeCloseTo(0.4 / mass, 1);
    expect(c.get(3)! / 20000).toBeCloseTo(0.25 / mass, 1);
  });

  it("top-p keeps the smallest set of top tokens reaching the mass", () => {
    const sampler = new Sampler(probs.length);
    const at = (topP: number) =>
      [
        ...counts(draw(sampler, logitsOf(probs), { greedy: false, temperature: 1, topP, topK: 0 }, `p${topP}`, 5000)).keys(),
      ].sort();
    expect(at(0.3)).toEqual([1]);
    expect(at(0.6)).toEqual([1, 3]);
    expect(at(0.7)).toEqual([1, 3, 4]);
    expect(at(0.85)).toEqual([1, 3, 4, 5]);
    expect(at(1)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("applies top-p after top-k (renormalised over the k tokens)", () => {
    const sampler = new Sampler(probs.length);
    // Top-2 mass 0.65: token 1 holds 0.615 of it, so top-p 0.6 keeps only token 1.
    const c = counts(draw(sampler, logitsOf(probs), { greedy: false, temperature: 1, topP: 0.6, topK: 2 }, "kp", 3000));
    expect([...c.keys()]).toEqual([1]);
  });

  it("finds the nucleus in a large, flat vocabulary (candidate cutoff lowered)", () => {
    const big = 5000;
    const sampler = new Sampler(big);
    const logits = new Float32Array(big).fill(0);
    logits[17] = 12; // dominant token with ~97% of the mass
    const tokens = draw(sampler, logits, { greedy: false, temperature: 1, topP: 0.99, topK: 0 }, "flat", 1000);
    expect(new Set(tokens).size).toBeGreaterThan(10);
    expect(tokens.filter((t) => t === 17).length / 1000).toBeGreaterThan(0.9);
  });

  it("lower temperature sharpens the distribution", () => {
    const sampler = new Sampler(probs.length);
    const share = (temperature: number) =>
      draw(sampler, logitsOf(probs), { greedy: false, temperature, topP: 1, topK: 0 }, `t${temperature}`, 4000).filter(
        (t) => t === 1,
      ).length / 4000;
    expect(share(0.3)).toBeGreaterThan(share(1) + 0.2);
  });

  it("never samples banned ids or ids beyond the tokenizer's vocabulary", () => {
    const sampler = new Sampler(10, 8, [2]);
    const logits = Float32Array.from([0, 0, 50, 0, 0, 0, 0, 0, 60, 60]);
    const tokens = draw(sampler, logits, { greedy: false, temperature: 1, topP: 1, topK: 0 }, "ban", 2000);
    expect(tokens.every((t) => t !== 2 && t < 8)).toBe(true);
    expect(sampler.sample(logits, 0, { ...SAMPLE, greedy: true }, createRng("x"))).toBe(0);
  });

  it("treats NaN logits as impossible and fails clearly when nothing is possible", () => {
    const sampler = new Sampler(3);
    const tokens = draw(sampler, Float32Array.from([NaN, 1, NaN]), SAMPLE, "nan", 50);
    expect(new Set(tokens)).toEqual(new Set([1]));
    expect(() => sampler.sample(Float32Array.from([NaN, -Infinity, NaN]), 0, SAMPLE, createRng("z"))).toThrow(/every logit/);
  });
});

describe("resolveSampling", () => {
  it("names the bad field and what was expected", () => {
    expect(() => resolveSampling({ topP: 0 }, SAMPLE)).toThrow(EngineRequestError);
    expect(() => resolveSampling({ topP: 1.5 }, SAMPLE)).toThrow(/sampling\.topP must be a number in \(0, 1\], got 1.5/);
    expect(() => resolveSampling({ temperature: -1 }, SAMPLE)).toThrow(/sampling\.temperature/);
    expect(() => resolveSampling({ topK: 2.5 }, SAMPLE)).toThrow(/sampling\.topK must be an integer >= 0/);
    expect(resolveSampling({ topK: 5 }, SAMPLE)).toEqual({ ...SAMPLE, topK: 5 });
  });
});
