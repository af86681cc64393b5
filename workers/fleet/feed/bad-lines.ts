/**
 * A manifest line the producer cannot enqueue (a missing field, an unreadable image, a path
 * outside the image root, …) is recorded like a failed item: runs/<run>/failed/<item>.json
 * with the reason, its outcome in the ledger (`b:<reason>`), and the line marked as
 * submitted, so the run counts it as finished. A later submit of the run looks at the line
 * again (it may have been fixed); `retry` re-enqueues it when its input was fine but its
 * image was not.
 */
import type { S3Store } from "../../../shared/io/storage/s3-store.ts";
import type { RunLedger } from "../books/index.ts";
import { putFailureRecord, RECORD_VERSION, type FailureRecord } from "../protocol/index.ts";

export interface BadLine {
  line: number;
  id: string | null;
  item: string;
  reason: string;
  field: string;
  message: string;
}

export async function recordBadLine(
  run: string,
  b: BadLine,
  input: FailureRecord["input"],
  deps: { store: S3Store; ledger: RunLedger },
  at: number,
): Promise<void> {
  const record: FailureRecord = {
    kind: "failure",
    version: RECORD_VERSION,
    run,
    id: b.id,
    item: b.item,
    line: b.line,
    stage: "submit",
    reason: b.reason,
    message: b.message,
    field: b.field,
    input,
    at: new Date(at).toISOString(),
  };
  await putFailureRecord(deps.store, record);
  await deps.ledger.recordOutcome(run, b.item, `b:${b.reason}`, { at, byWorker: false });
  await deps.ledger.markSubmitted(run, [[b.item, b.line]]);
}
