/**
 * Which queued work forms the next decoder call: pure decisions over row shapes, no model.
 *
 * * Prefill and decode calls alternate while both have work, so new items join running batches
 *   quickly and running sequences are not starved.
 * * A prefill batch is led by the oldest queued row, so no row waits behind a stream of shorter
 *   ones; rows of similar length join it while the padding (every row is padded to the batch's
 *   longest) stays within MAX_PREFILL_PADDING of the real tokens and the batch within its slots.
 * * A decode batch keeps its running rows and fills up to maxBatch from the waiting rows in
 *   arrival order, while its slots (rows × the longest row's positions after the step) stay
 *   within the KV budget's; a row with no room left in its context window ends instead. The
 *   running rows always stay, and a batch with none takes at least one row, so work goes on.
 */

/** Most padding a prefill batch may add, as a fraction of its real tokens. */
export const MAX_PREFILL_PADDING = 0.25;

export type DecoderCall = "prefill" | "decode";

/** The next call given what is queued and what the last call was; null when there is nothing to do. */
export function chooseNextCall(prefillQueued: boolean, decodeQueued: boolean, last: DecoderCall | null): DecoderCall | null {
  if (prefillQueued && (last !== "prefill" || !decodeQueued)) return "prefill";
  return decodeQueued ? "decode" : null;
}

export interface PrefillShape {
  /** Cached positions the row continues. */
  past: number;
  /** New tokens the row runs. */
  fresh: number;
}

/**
 * The queue positions of the next prefill call's rows, in row order: the oldest (position 0)
 * first, then the others closest in length to it that fit. Batch slots are rows × (past + new);
 * a single row larger than maxSlots runs alone.
 */
export function choosePrefillBatch(queue: readonly PrefillShape[], maxSlots: number): number[] {
  const head = queue[0];
  if (head === undefined) return [];
  const batch = [0];
  let maxPast = head.past;
  let maxNew = head.fresh;
  let realTokens = head.fresh;
  const distance = (i: number) => Math.abs(queue[i]!.fresh - head.fresh);
  const others = queue.map((_, i) => i).slice(1);
  for (const i of others.sort((a, b) => distance(a) - distance(b))) {
    const next = queue[i]!;
    const past = Math.max(maxPast, next.past);
    const fresh = Math.max(maxNew, next.fresh);
    const rows = batch.length + 1;
    const real = realTokens + next.fresh;
    if (rows * (past + fresh) > maxSlots || rows * fresh > (1 + MAX_PREFILL_PADDING) * real) continue;
    batch.push(i);
    maxPast = past;
    maxNew = fresh;
    realTokens = real;
  }
  return batch;
}

export interface DecodeShape {
  /** Cached positions. */
  length: number;
  /** Largest cache length the row may reach (its context window). */
  maxLength: number;
}

export interface DecodePlan {
  /** Running rows (positions) that take the next step, in order. */
  stay: number[];
  /** Waiting rows (positions, from the front) that join after them. */
  join: number[];
  /** Running and waiting rows without room for another position: they end here. */
  endRunning: number[];
  endWaiting: number[];
}

const hasRoom = (r: DecodeShape) => r.length + 1 <= r.maxLength;

/** The rows of the next decode step; the waiting rows it looks at are the first join + endWaiting. */
export function chooseDecodeBatch(
  running: readonly DecodeShape[],
  waiting: readonly DecodeShape[],
  maxBatch: number,
  maxSlots = Infinity,
): DecodePlan {
  const plan: DecodePlan = { stay: [], join: [], endRunning: [], endWaiting: [] };
  let longest = 0;
  for (let i = 0; i < running.length; i++) {
    const r = running[i]!;
    if (!hasRoom(r)) {
      plan.endRunning.push(i);
      continue;
    }
    plan.stay.push(i);
    longest = Math.max(longest, r.length + 1);
  }
  for (let i = 0; i < waiting.length && plan.stay.length + plan.join.length < maxBatch; i++) {
    const w = waiting[i]!;
    if (!hasRoom(w)) {
      plan.endWaiting.push(i);
      continue;
    }
    const rows = plan.stay.length + plan.join.length + 1;
    const after = Math.max(longest, w.length + 1);
    if (rows > 1 && rows * after > maxSlots) break;
    plan.join.push(i);
    longest = after;
  }
  return plan;
}
