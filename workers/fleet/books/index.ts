/**
 * A run's books in Redis: its ledger (items taken in, outcomes, counters) and its state (settings,
 * source, the feeder's cursor), mirrored to the run manifest in S3. Above the protocol only.
 */
export { RunLedger } from "./ledger.ts";
export type { Outcome, Recorded, RunCounts } from "./ledger.ts";
export { RunRegistry, TERMINAL_STATES, mirrorRunState } from "./run-state.ts";
export type { BadLineLimit, RunMeta, RunSource, RunState } from "./run-state.ts";
