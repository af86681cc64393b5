/**
 * Where a benchmark's time goes: the seconds spent in each kind of session call, measured by
 * wrapping the runner's methods (the engine itself keeps no clocks). A decoder call that adds
 * one token to a non-empty cache is a decode step; any other decoder call is a prefill.
 */
import type { ModelRunner } from "../../workers/engine/runner.ts";

export interface PhaseSeconds {
  vision: number;
  embed: number;
  prefill: number;
  decode: number;
}

export const PHASES = ["vision", "embed", "prefill", "decode"] as const satisfies readonly (keyof PhaseSeconds)[];

async function timed<T>(seconds: PhaseSeconds, phase: keyof PhaseSeconds, call: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await call();
  } finally {
    seconds[phase] += (performance.now() - t0) / 1000;
  }
}

/** Starts counting the runner's session time; the returned object fills as the runner works. */
export function timePhases(runner: ModelRunner): PhaseSeconds {
  const seconds: PhaseSeconds = { vision: 0, embed: 0, prefill: 0, decode: 0 };
  const forward = runner.forward.bind(runner);
  const encodeImages = runner.encodeImages.bind(runner);
  const encodeCross = runner.encodeCross.bind(runner);
  const embedIds = runner.embedIds.bind(runner);
  runner.forward = (input) => timed(seconds, input.steps === 1 && input.past > 0 ? "decode" : "prefill", () => forward(input));
  runner.encodeImages = (...args) => timed(seconds, "vision", () => encodeImages(...args));
  runner.encodeCross = (...args) => timed(seconds, "vision", () => encodeCross(...args));
  runner.embedIds = (ids) => timed(seconds, "embed", () => embedIds(ids));
  return seconds;
}
