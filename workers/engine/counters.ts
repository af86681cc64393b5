/**
 * The engine's work counters, and the updates that more than one code path makes to them (the
 * batched scheduler and the reference pattern count a sampled token and a decode step alike).
 */
export interface EngineCounters {
  /** Vision encoder runs. */
  visionCalls: number;
  /** embed_tokens runs (0 per decode step when the embedding table is in memory). */
  embedCalls: number;
  /** Decoder runs (prefill batches and decode steps). */
  decoderCalls: number;
  /** All session runs: vision + embed + decoder. */
  forwardPasses: number;
  /** Real (non-padding) tokens pushed through the decoder. */
  decoderTokens: number;
  /** Batch slots the decoder computed, padding included (rows × new tokens). */
  decoderSlots: number;
  /** Prompt and prefix tokens run through the decoder in prefill calls. */
  prefillTokens: number;
  /** Prompt and prefix tokens taken from an item's prefix cache instead of being run again. */
  cachedTokens: number;
  /** Decode steps (one new token for each sequence in the batch). */
  decodeSteps: number;
  /** Sum over decode steps of the batch size (divide by decodeSteps for the mean). */
  decodeRows: number;
  /** Largest decode batch so far. */
  maxDecodeBatch: number;
  /** Tokens sampled for generate requests. */
  generatedTokens: number;
  /** Tokens sampled by the generative judge. */
  judgeTokens: number;
  /** Judge verdicts read from one forward pass (score mode, both orders count once each). */
  judgeScorePasses: number;
  /** Candidates a verifier scored, one forward pass each. */
  verifyPasses: number;
  itemsOpened: number;
}

export function zeroCounters(): EngineCounters {
  return {
    visionCalls: 0,
    embedCalls: 0,
    decoderCalls: 0,
    forwardPasses: 0,
    decoderTokens: 0,
    decoderSlots: 0,
    prefillTokens: 0,
    cachedTokens: 0,
    decodeSteps: 0,
    decodeRows: 0,
    maxDecodeBatch: 0,
    generatedTokens: 0,
    judgeTokens: 0,
    judgeScorePasses: 0,
    verifyPasses: 0,
    itemsOpened: 0,
  };
}

/** Which counter a sampled token goes to. */
export type TokenPurpose = "generate" | "judge";

export function countSampledToken(counters: EngineCounters, purpose: TokenPurpose): void {
  if (purpose === "judge") counters.judgeTokens++;
  else counters.generatedTokens++;
}

/** One decoder call advancing `rows` sequences by one token each. */
export function countDecodeStep(counters: EngineCounters, rows: number): void {
  counters.decodeSteps++;
  counters.decodeRows += rows;
  counters.decoderTokens += rows;
  if (rows > counters.maxDecodeBatch) counters.maxDecodeBatch = rows;
}
