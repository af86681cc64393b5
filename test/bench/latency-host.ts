/**
 * A model host that does no model work and takes the time a GPU would: the answers are the
 * scripted host's (test/support/scripted-host.ts: a function of the request alone), and each
 * request sleeps as long as it would run on the modelled GPU. For the simulated fleet of
 * `npm run bench:fleet`: many of these in a few processes stand for a fleet of GPU workers.
 *
 * The model (H100_11B, the default) and its assumptions:
 *   * one H100 SXM (3.35 TB/s HBM3, 989 TFLOP/s dense bf16) serving an 11B vision model in bf16
 *     (Llama-3.2-11B-Vision, LLaVA-CoT's base): 21.3 GB of weights;
 *   * decode is memory-bound: one decoder pass reads every weight once, 21.3 GB / 3.35 TB/s =
 *     6.4 ms, 9 ms at 70% of peak bandwidth; below the batch size where decode turns
 *     compute-bound (far above `slots`), a pass costs the same for one sequence or for `slots`,
 *     so sequences running together do not slow each other (continuous batching);
 *   * prefill is compute-bound: 2 × 10.7 GFLOP a token at 50% of peak = 0.043 ms a token;
 *   * opening an item (once per worker per item): the vision encoder over 4 tiles × 1601
 *     patches (0.9B parameters, 11 TFLOP, 22 ms at 50%) and the question's prompt;
 *   * a stage candidate runs the stage's typical length (SUMMARY 40, CAPTION 120, REASONING
 *     180, CONCLUSION 20 tokens, an assumption in the range of LLaVA-CoT's outputs), after a
 *     prefill of its prefix; a score-judge comparison or check is one forward pass over both
 *     candidates;
 *   * the GPU runs at most `slots` sequences at once; more wait for a free slot.
 *
 * `busySlotSeconds` is the GPU time the work took (each sequence's own duration), from which
 * the bench derives the ideal items/s: slots ÷ (busy slot-seconds per item).
 */
import { STAGES, type Stage } from "../../shared/core/protocol/stages.ts";
import type { GenerateRequest, JudgeRequest } from "../../shared/core/search/types.ts";
import type { ItemInput, ModelHost, OpenItem } from "../../workers/fleet/protocol/index.ts";
import { generateOne, judgeOne } from "../support/scripted-host.ts";

export interface LatencyModel {
  label: string;
  /** One decoder pass (a generated token of every sequence in the batch). */
  decodeStepMs: number;
  /** Prefill, per prompt token. */
  prefillMsPerToken: number;
  /** Opening an item: vision encoder and the question's prompt. */
  openMs: number;
  /** Tokens a candidate of each stage runs. */
  stageTokens: Record<Stage, number>;
  /** Prompt tokens of the question and the chat template (the prefix of every request). */
  promptTokens: number;
  /** Sequences the GPU runs at once. */
  slots: number;
}

export const H100_11B: Omit<LatencyModel, "slots"> = {
  label: "11B vision model (bf16) on one H100 SXM",
  decodeStepMs: 9,
  prefillMsPerToken: 0.043,
  openMs: 25,
  stageTokens: { SUMMARY: 40, CAPTION: 120, REASONING: 180, CONCLUSION: 20 },
  promptTokens: 64,
};

/** Waits for a free slot; FIFO. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async run(ms: number): Promise<void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      await new Promise((r) => setTimeout(r, ms));
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

export interface LatencyHost extends ModelHost {
  /** GPU time the work took so far, in slot-seconds. */
  busySlotSeconds(): number;
}

/** Tokens of the accepted text a request continues (its stages at their modelled lengths). */
function prefixTokens(model: LatencyModel, prefix: string): number {
  return STAGES.reduce((sum, s) => (prefix.includes(`</${s}>`) ? sum + model.stageTokens[s] : sum), model.promptTokens);
}

export function generateMs(model: LatencyModel, req: GenerateRequest): number {
  const tokens =
    req.stop.kind === "stage"
      ? model.stageTokens[req.stop.stage]
      : req.stop.kind === "end"
        ? STAGES.reduce((sum, s) => sum + model.stageTokens[s], 0)
        : Math.ceil(model.stageTokens.REASONING / 3);
  return prefixTokens(model, req.prefix) * model.prefillMsPerToken + tokens * model.decodeStepMs;
}

export function judgeMs(model: LatencyModel, req: JudgeRequest): number {
  const stage = (req.kind === "compare" ? req.template : "REASONING") as Stage | "all" | "sentence";
  const candidate =
    stage === "all" ? STAGES.reduce((s, x) => s + model.stageTokens[x], 0) : (model.stageTokens[stage as Stage] ?? 60);
  const prompt = model.promptTokens + (req.kind === "compare" ? 2 : 1) * candidate;
  return prompt * model.prefillMsPerToken + model.decodeStepMs;
}

export function createLatencyHost(model: LatencyModel): LatencyHost {
  const slots = new Slots(model.slots);
  let busyMs = 0;
  const run = async (ms: number) => {
    busyMs += ms;
    await slots.run(ms);
  };
  return {
    modelId: `latency-model (${model.label})`,
    digest: `sha256:${"1".repeat(64)}`,
    busySlotSeconds: () => busyMs / 1000,
    async open(_item: ItemInput): Promise<OpenItem> {
      await run(model.openMs);
      return {
        async generate(requests) {
          await Promise.all(requests.map((r) => run(generateMs(model, r))));
          return requests.map((r) => {
            const result = generateOne(r);
            const tokens =
              r.stop.kind === "stage" ? model.stageTokens[r.stop.stage] : Math.max(result.tokens, model.stageTokens.SUMMARY);
            return { ...result, tokens };
          });
        },
        async judge(requests) {
          await Promise.all(requests.map((r) => run(judgeMs(model, r))));
          return requests.map(judgeOne);
        },
        close() {},
      };
    },
  };
}
