/**
 * Bad usage or configuration found by a fleet function before it did anything (CLI exit code 2).
 * A file of its own so that the in-process commands can tell it apart without loading BullMQ.
 */
export class UsageError extends Error {
  override readonly name = "UsageError";
}
