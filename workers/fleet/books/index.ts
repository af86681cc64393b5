/**
 * A run's books in Redis: its ledger (items taken in, outcomes, counters) and its state (settings,
 * source, the feeder's cursor), mirrored to the run manifest in S3. Above the protocol only.
 */
export { RunLedger } from "./ledger.ts";
export type { Outcome, Recorded, RunCounts } from "./ledger.ts";
export { RunKeeper } from "./run-keeper.ts";
export type { MirrorFailed } from "./run-keeper.ts";
export { FEEDER_BEAT_MS, FEEDER_STALE_MS, RunRegistry, TERMINAL_STATES, feederOf } from "./run-state.ts";
export type { BadLineLimit, Feeder, RunMeta, RunSource, RunState } from "./run-state.ts";
