/**
 * What the runner and the batch executor feed the decoder, on a fake decoder session: position ids
 * laid out [axes, rows, steps] (M-RoPE's three rows), `num_logits_to_keep` when the graph declares
 * it, and each prefill row's logits read at its own last token from the steps kept.
 */
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { BatchExecutor } from "../../workers/engine/batch-executor.ts";
import { zeroCounters } from "../../workers/engine/counters.ts";
import type { ModelSpec } from "../../workers/engine/model-folder.ts";
import { HostKvSpace } from "../../workers/engine/kv-host.ts";
import { ModelRunner } from "../../workers/engine/runner.ts";
import { Sampler } from "../../workers/engine/sampler.ts";
import type { SessionContract } from "../../workers/engine/session-contract.ts";

const VOCAB = 5;
const HIDDEN = 2;
const SPEC: ModelSpec = {
  modelType: "qwen2_vl",
  imageTokenId: 4,
  imageSeqLength: null,
  numLayers: 1,
  crossAttentionLayers: [],
  numKvHeads: 1,
  headDim: 1,
  hiddenSize: HIDDEN,
  vocabSize: VOCAB,
  contextLength: null,
  eosTokenIds: [3],
  bosTokenId: null,
};
const CONTRACT: SessionContract = {
  kvType: "float32",
  embedType: "float32",
  pixelType: "float32",
  featureType: "float32",
  logitsType: "float32",
  hiddenSize: HIDDEN,
  vocabSize: VOCAB,
  useCacheBranch: false,
  logitsToKeep: "num_logits_to_keep",
  positionAxes: 3,
  visionExtras: [],
  imageSize: null,
  cross: null,
};

/** A decoder that returns, for row b and absolute step t, logits all equal to 100·b + t, for the steps kept. */
function fakeDecoder(seen: Record<string, ort.Tensor>[]) {
  return {
    async run(feeds: Record<string, ort.Tensor>) {
      seen.push(feeds);
      const [rows, steps] = feeds.inputs_embeds!.dims as [number, number, number];
      const total = feeds.attention_mask!.dims[1]!;
      const keep = Number((feeds.num_logits_to_keep!.data as BigInt64Array)[0]);
      const logits = new Float32Array(rows * keep * VOCAB);
      for (let b = 0; b < rows; b++)
        for (let k = 0; k < keep; k++)
          logits.fill(100 * b + steps - keep + k, (b * keep + k) * VOCAB, (b * keep + k + 1) * VOCAB);
      const present = () => new ort.Tensor("float32", new Float32Array(rows * total), [rows, 1, total, 1]);
      return {
        logits: new ort.Tensor("float32", logits, [rows, keep, VOCAB]),
        "present.0.key": present(),
        "present.0.value": present(),
      };
    },
  };
}

function runner(seen: Record<string, ort.Tensor>[]): ModelRunner {
  const embed = {
    async run(feeds: Record<string, ort.Tensor>) {
      const n = feeds.input_ids!.dims[1]!;
      return { inputs_embeds: new ort.Tensor("float32", new Float32Array(n * HIDDEN), [1, n, HIDDEN]) };
    },
  };
  const unused = {} as ort.InferenceSession;
  return new ModelRunner(
    unused,
    embed as unknown as ort.InferenceSession,
    fakeDecoder(seen) as unknown as ort.InferenceSession,
    SPEC,
    CONTRACT,
    new HostKvSpace(CONTRACT.kvType),
    HIDDEN,
    VOCAB,
    zeroCounters(),
  );
}

describe("decoder feeds", () => {
  it("prefills rows of different lengths with their M-RoPE rows, keeping only the logits read", async () => {
    const seen: Record<string, ort.Tensor>[] = [];
    const executor = new BatchExecutor(runner(seen), new Sampler(VOCAB), { imageTokenId: 4 });
    const long = { base: null, ids: [0, 1, 2, 0], positions: [0, 1, 2].map((a) => [0, 1, 2 + a, 9]), keepKv: false };
    const short = { base: null, ids: [1, 2], keepKv: false };
    const [a, b] = await executor.prefill([long, short]);
    const feeds = seen[0]!;
    // The shortest row ends at step 1 of 4: the last three steps' logits are enough.
    expect(Array.from(feeds.num_logits_to_keep!.data as BigInt64Array, Number)).toEqual([3]);
    expect(feeds.num_logits_to_keep!.dims).toEqual([]);
    expect(a!.logits[0]).toBe(3);
    expect(b!.logits[0]).toBe(101);
    expect(feeds.position_ids!.dims).toEqual([3, 2, 4]);
    // Per axis: the long row's given positions, then the short row counted from 0 (right padding stays 0).
    expect(Array.from(feeds.position_ids!.data as BigInt64Array, Number)).toEqual([
      ...[0, 1, 2, 9, 0, 1, 0, 0],
      ...[0, 1, 3, 9, 0, 1, 0, 0],
      ...[0, 1, 4, 9, 0, 1, 0, 0],
    ]);
  });

  it("refuses a prefill row whose position ids do not cover its tokens on every axis", () => {
    const executor = new BatchExecutor(runner([]), new Sampler(VOCAB), { imageTokenId: 4 });
    expect(() => executor.checkPrefillRow({ base: null, ids: [0, 1], positions: [[0, 1]], keepKv: false })).toThrow(
      /has position ids \[2\]; expected 3 x 2/,
    );
  });
});
