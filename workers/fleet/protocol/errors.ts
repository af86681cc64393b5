/**
 * Failure reasons. Every error a fleet job ends with carries a short reason code (the label of
 * stagebeam_items_failed_total and the `reason` of a failure record) in front of its message:
 * BullMQ keeps only the message (`failedReason`), so the code travels as `<code>: <message>`.
 *
 * Bad input (an image that is missing or does not decode, invalid parameters, malformed job
 * data) fails at once with BullMQ's UnrecoverableError; anything else (S3 or Redis hiccups, a
 * crashed engine call) is transient and retried with exponential backoff.
 */
import { UnrecoverableError } from "bullmq";
import { SearchError } from "../../../shared/core/search/errors.ts";
import { S3StoreError } from "../../../shared/io/storage/s3-store.ts";
import { badInputCode, isBadInput } from "./model-host.ts";

const CODE = /^[a-z][a-z0-9-]{0,63}$/;

/** An error with a reason code; `unrecoverable` errors are never retried. */
export class FleetError extends Error {
  override readonly name = "FleetError";
  constructor(
    readonly code: string,
    message: string,
    readonly unrecoverable: boolean,
  ) {
    super(message);
    if (!CODE.test(code)) throw new Error(`invalid reason code ${JSON.stringify(code)}`);
  }
}

export const badInput = (code: string, message: string) => new FleetError(code, message, true);
export const transient = (code: string, message: string) => new FleetError(code, message, false);

export interface Classified {
  code: string;
  message: string;
  unrecoverable: boolean;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

// ioredis gives up a command (MaxRetriesPerRequestError) or reports a closed or refused
// connection; a replica that is still loading or read-only after a failover says so.
const REDIS_OUTAGE = /Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|^LOADING|^READONLY|^CLUSTERDOWN|^TRYAGAIN/;

function isRedisOutage(err: unknown): boolean {
  return err instanceof Error && (err.name === "MaxRetriesPerRequestError" || REDIS_OUTAGE.test(err.message));
}

/** The reason code, message and retry class of any error a job may throw. */
export function classify(err: unknown): Classified {
  if (err instanceof FleetError) return { code: err.code, message: err.message, unrecoverable: err.unrecoverable };
  if (isBadInput(err)) return { code: badInputCode(err), message: err.message, unrecoverable: true };
  if (err instanceof SearchError) return { code: "search-error", message: err.message, unrecoverable: true };
  if (err instanceof S3StoreError) return { code: "storage", message: err.message, unrecoverable: false };
  if (isRedisOutage(err)) return { code: "redis", message: message(err), unrecoverable: false };
  if (err instanceof UnrecoverableError || (err instanceof Error && err.name === "UnrecoverableError")) {
    return { ...parseReason(message(err)), unrecoverable: true };
  }
  return { code: "runtime", message: message(err), unrecoverable: false };
}

/** The error a processor throws: the code goes into the message; bad input becomes UnrecoverableError. */
export function toJobError(err: unknown): Error {
  const c = classify(err);
  const text = formatReason(c.code, c.message);
  if (c.unrecoverable) return new UnrecoverableError(text);
  const e = new Error(text);
  if (err instanceof Error && err.stack) e.stack = `${text}\n${err.stack.split("\n").slice(1).join("\n")}`;
  return e;
}

/** The input field a reason code is about, for failure records: every image-* code is the image's. */
export function fieldOfReason(code: string): string | null {
  return code.startsWith("image-") ? "image" : null;
}

export function formatReason(code: string, msg: string): string {
  return msg.startsWith(`${code}: `) ? msg : `${code}: ${msg}`;
}

/** Code and message from a `failedReason`; a reason without a code is `runtime`. */
export function parseReason(reason: string): { code: string; message: string } {
  // BullMQ's own reasons for a job that kept stalling (its worker died or starved its event loop).
  if (/stalled more than allowable limit|started more than allowable limit/.test(reason))
    return { code: "stalled", message: reason };
  const m = /^([a-z][a-z0-9-]{0,63}): ([\s\S]*)$/.exec(reason);
  return m ? { code: m[1]!, message: m[2]! } : { code: "runtime", message: reason };
}
