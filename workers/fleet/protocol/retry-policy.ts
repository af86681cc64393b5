/**
 * When a failed job runs again. Outages of S3 or Redis, and workers that die under a job, are
 * the fleet's weather: a job keeps retrying them with capped exponential backoff for a whole
 * budget (WORKER_RETRY_BUDGET_SECONDS, 10 minutes by default), so a few minutes' outage never
 * fails an item. Anything else that is not bad input gets a few quick attempts, and bad input
 * none: an item fails for good only on its own input or after the budget.
 */
import { parseReason, type Classified } from "./errors.ts";

/** Reason codes of the infrastructure, not of the item. */
export const TRANSIENT_CODES: ReadonlySet<string> = new Set(["storage", "redis", "stalled"]);

export interface RetryPolicy {
  /** How long transient failures are retried, in total backoff time. */
  budgetMs: number;
  /** First delay; each retry doubles it up to capMs. */
  baseMs: number;
  capMs: number;
  /** Attempts in all for other recoverable errors (an engine call that crashed, say). */
  otherAttempts: number;
}

export const retryPolicy = (budgetSeconds: number): RetryPolicy => ({
  budgetMs: budgetSeconds * 1000,
  baseMs: 1_000,
  capMs: 30_000,
  otherAttempts: 4,
});

/** BullMQ's own ceiling on attempts; the policy always decides before it is reached. */
export const MAX_JOB_ATTEMPTS = 10_000;

/** Name of the backoff strategy that jobs ask for and every worker registers. */
export const BACKOFF_TYPE = "stagebeam";

const delayAfter = (p: RetryPolicy, attempt: number) => Math.min(p.capMs, p.baseMs * 2 ** Math.min(attempt - 1, 30));

/**
 * Milliseconds to wait before the next attempt, after `attemptsMade` failed attempts (≥ 1) of
 * which this was the last; null when the job has failed for good.
 */
export function retryDelay(
  p: RetryPolicy,
  failure: Pick<Classified, "code" | "unrecoverable">,
  attemptsMade: number,
): number | null {
  if (failure.unrecoverable) return null;
  if (!TRANSIENT_CODES.has(failure.code)) return attemptsMade < p.otherAttempts ? delayAfter(p, attemptsMade) : null;
  let waited = 0;
  for (let a = 1; a < attemptsMade; a++) waited += delayAfter(p, a);
  const delay = delayAfter(p, attemptsMade);
  return waited + delay <= p.budgetMs ? delay : null;
}

/**
 * The failure behind the error a processor threw, as BullMQ hands it to the backoff strategy:
 * `toJobError` has already turned the original into `<code>: <message>` (bad input became an
 * UnrecoverableError, which never reaches a backoff), so the code is read back from the message.
 */
export function jobFailure(err: Error | undefined): Pick<Classified, "code" | "unrecoverable"> {
  return { code: err === undefined ? "runtime" : parseReason(err.message).code, unrecoverable: false };
}
