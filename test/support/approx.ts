import { expect } from "vitest";

/**
 * A matcher for a search trace computed elsewhere: batched and unbatched decoder calls agree
 * to ~1e-6, not bit for bit, so the judge's scores are compared to 4 decimals; every text,
 * id, verdict and count must match exactly.
 */
export function closeTrace(value: unknown): unknown {
  if (typeof value === "number" && !Number.isInteger(value)) return expect.closeTo(value, 4);
  if (Array.isArray(value)) return value.map(closeTrace);
  if (value !== null && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, closeTrace(v)]));
  return value;
}
