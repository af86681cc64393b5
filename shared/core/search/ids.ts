/**
 * Work ids and sample keys. Both are functions of (item, step, candidate) only, so a step that
 * re-runs after a crash asks for the same child jobs (BullMQ then adds nothing twice) and a
 * candidate samples the same tokens whichever worker or batch runs it.
 *
 * Ids always have exactly three ':'-separated parts, `<item>:<step>:<work>`: BullMQ 5 rejects a
 * custom job id that contains ':' unless it splits into exactly three parts. That is also why
 * an item id may not contain ':' itself (the id policy, shared/core/ids.ts).
 */

export { ITEM_ID_PATTERN } from "../ids.ts";

export function candidateId(itemId: string, stepKey: string, candidate: number): string {
  return `${itemId}:${stepKey}:c${candidate}`;
}

/**
 * Named after the pair rather than the round: a pair meets at most once in a knock-out, and a
 * re-run that reached a different pairing can never be served a stale verdict for it.
 */
export function compareId(itemId: string, stepKey: string, first: number, second: number): string {
  return `${itemId}:${stepKey}:c${first}-vs-c${second}`;
}

export function checkId(itemId: string, stepKey: string, candidate: number): string {
  return `${itemId}:${stepKey}:c${candidate}-check`;
}

export function verifyId(itemId: string, stepKey: string, candidate: number): string {
  return `${itemId}:${stepKey}:c${candidate}-verify`;
}

export function sampleKey(seed: number, itemId: string, stepKey: string, candidate: number): string {
  return `${seed}/${itemId}/${stepKey}/c${candidate}`;
}
