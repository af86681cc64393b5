import { describe, expect, it } from "vitest";
import { candidateId, checkId, compareId } from "../../shared/core/search/ids.ts";
import { BadInputError, childJobId, requestJobId, runKeys, runsIndexKey, workIdOf } from "../../workers/fleet/protocol/index.ts";
import {
  badInput,
  classify,
  FleetError,
  formatReason,
  parseReason,
  toJobError,
  transient,
} from "../../workers/fleet/protocol/errors.ts";
import { SearchError } from "../../shared/core/search/errors.ts";
import { S3StoreError } from "../../shared/io/storage/s3-store.ts";
import { UnrecoverableError } from "bullmq";

describe("fleet ids", () => {
  it("maps work ids to job ids without ':' (BullMQ's rule), with the run, and back", () => {
    for (const work of [candidateId("it-1", "SUMMARY", 3), compareId("it-1", "s2", 0, 1), checkId("it-1", "REASONING", 2)]) {
      const job = childJobId("run.1", work);
      expect(job).not.toContain(":");
      expect(job.startsWith("run.1/it-1/")).toBe(true);
      expect(workIdOf("run.1", job)).toBe(work);
    }
    expect(childJobId("r", "it:SUMMARY:c0")).toBe("r/it/SUMMARY/c0");
    expect(childJobId("other", "it:SUMMARY:c0")).not.toBe(childJobId("r", "it:SUMMARY:c0"));
    expect(workIdOf("r", "s/it/SUMMARY/c0")).toBeUndefined();
    expect(requestJobId("r", "it")).toBe("r/it");
    expect(() => requestJobId("bad run", "it")).toThrow(/invalid run id/);
  });

  it("keeps the run ledger under the queues' hash tag", () => {
    const k = runKeys("{sb}", "demo-1");
    for (const key of Object.values(k)) expect(key.startsWith("{sb}:")).toBe(true);
    expect(new Set(Object.values(k)).size).toBe(5);
    expect(runsIndexKey("{sb}").startsWith("{sb}:")).toBe(true);
  });
});

describe("fleet failure reasons", () => {
  it("classifies bad input as unrecoverable and everything else as transient", () => {
    expect(classify(new BadInputError("image-unreadable", "x"))).toEqual({
      code: "image-unreadable",
      message: "x",
      unrecoverable: true,
    });
    const engineErr = Object.assign(new Error('item "a": image: cannot decode'), { name: "ItemInputError", field: "image" });
    expect(classify(engineErr)).toMatchObject({ code: "image-unreadable", unrecoverable: true });
    expect(classify(Object.assign(new Error("bad"), { name: "EngineRequestError" }))).toMatchObject({
      code: "bad-request",
      unrecoverable: true,
    });
    expect(classify(new SearchError("a", "results missing"))).toMatchObject({ code: "search-error", unrecoverable: true });
    expect(classify(new S3StoreError("PutObject", "k", new Error("down")))).toMatchObject({
      code: "storage",
      unrecoverable: false,
    });
    // A dropped connection outside the S3 client is Redis's (the worker talks to nothing else).
    expect(classify(new Error("ECONNRESET"))).toMatchObject({ code: "redis", unrecoverable: false });
    expect(classify(new Error("Connection is closed."))).toMatchObject({ code: "redis", unrecoverable: false });
    expect(classify(new Error("tensor shape mismatch"))).toMatchObject({ code: "runtime", unrecoverable: false });
    expect(classify(new UnrecoverableError("bad-job: nope"))).toEqual({ code: "bad-job", message: "nope", unrecoverable: true });
    expect(classify(transient("storage", "later"))).toMatchObject({ unrecoverable: false });
    expect(() => new FleetError("Bad Code", "x", true)).toThrow(/invalid reason code/);
  });

  it("puts the code into the job error so the parent can read it back", () => {
    const e = toJobError(badInput("image-missing", "image s3://b/k does not exist"));
    expect(e).toBeInstanceOf(UnrecoverableError);
    expect(parseReason(e.message)).toEqual({ code: "image-missing", message: "image s3://b/k does not exist" });
    const t = toJobError(new Error("socket hang up"));
    expect(t).not.toBeInstanceOf(UnrecoverableError);
    expect(t.message).toBe("runtime: socket hang up");
    expect(parseReason("job stalled more than allowable limit").code).toBe("stalled");
    expect(parseReason("no code here").code).toBe("runtime");
    expect(formatReason("x", "x: already")).toBe("x: already");
  });
});
