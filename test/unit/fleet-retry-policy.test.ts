import { describe, expect, it } from "vitest";
import { S3StoreError } from "../../shared/io/storage/s3-store.ts";
import { jobFailure, retryDelay, retryPolicy, toJobError } from "../../workers/fleet/protocol/index.ts";

const transient = { code: "storage", unrecoverable: false };

describe("retry policy", () => {
  it("backs off exponentially to a cap and retries infrastructure failures for the whole budget", () => {
    const p = retryPolicy(600);
    const delays: number[] = [];
    for (let attempt = 1; ; attempt++) {
      const d = retryDelay(p, transient, attempt);
      if (d === null) break;
      delays.push(d);
    }
    expect(delays.slice(0, 7)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
    const total = delays.reduce((s, d) => s + d, 0);
    // The whole budget is used and never exceeded: a 3-minute outage is ridden out with room to spare.
    expect(total).toBeLessThanOrEqual(600_000);
    expect(total).toBeGreaterThan(600_000 - 30_000);
    for (const code of ["redis", "stalled"]) expect(retryDelay(p, { code, unrecoverable: false }, 10)).toBe(30_000);
  });

  it("gives other recoverable errors a few quick attempts, and bad input none", () => {
    const p = retryPolicy(600);
    const runtime = { code: "runtime", unrecoverable: false };
    expect([1, 2, 3, 4].map((a) => retryDelay(p, runtime, a))).toEqual([1_000, 2_000, 4_000, null]);
    expect(retryDelay(p, { code: "image-unreadable", unrecoverable: true }, 1)).toBeNull();
    expect(retryDelay(p, { code: "storage", unrecoverable: true }, 1)).toBeNull();
  });

  it("with a zero budget, fails infrastructure errors at once", () => {
    expect(retryDelay(retryPolicy(0), transient, 1)).toBeNull();
  });

  it("reads the reason back from the error a processor threw, as BullMQ's backoff strategy sees it", () => {
    // What a request step throws when S3 is down: the S3 error, turned into a job error.
    const thrown = toJobError(new S3StoreError("PutObject", "runs/r/results/i.json", new Error("socket hang up")));
    expect(jobFailure(thrown)).toEqual({ code: "storage", unrecoverable: false });
    expect(retryDelay(retryPolicy(600), jobFailure(thrown), 5)).toBe(16_000);
    expect(jobFailure(toJobError(new Error("tensor shape mismatch")))).toEqual({ code: "runtime", unrecoverable: false });
    expect(jobFailure(undefined).code).toBe("runtime");
  });
});
