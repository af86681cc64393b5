import { describe, expect, it } from "vitest";
import { addInParts } from "../../workers/fleet/feed/bulk-add.ts";

/** A queue whose addBulk calls stay pending until the test settles them, in call order. */
function pendingQueue() {
  const calls: { jobs: number[]; settle(err?: Error): void }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  return {
    calls,
    get maxInFlight() {
      return maxInFlight;
    },
    addBulk(jobs: number[]) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      return new Promise<void>((resolve, reject) => {
        calls.push({
          jobs,
          settle: (err) => {
            inFlight--;
            if (err) reject(err);
            else resolve();
          },
        });
      });
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("addInParts", () => {
  it("sends the jobs in order, in parts, with the next part sent before the one before it returns", async () => {
    const q = pendingQueue();
    const done = addInParts(q, [1, 2, 3, 4, 5, 6, 7], 3);
    await tick();
    expect(q.calls.map((c) => c.jobs)).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    q.calls[0]!.settle();
    await tick();
    expect(q.calls.map((c) => c.jobs)).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
    q.calls[1]!.settle();
    q.calls[2]!.settle();
    await done;
    expect(q.maxInFlight).toBe(2);
  });

  it("fails with the first part that fails, and a later part's failure is not left unhandled", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const q = pendingQueue();
      const done = addInParts(q, [1, 2, 3, 4], 2);
      const outcome = done.then(
        () => null,
        (e: Error) => e.message,
      );
      await tick();
      q.calls[1]!.settle(new Error("second part failed"));
      await tick();
      q.calls[0]!.settle();
      expect(await outcome).toBe("second part failed");
      await tick();
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("adds nothing for no jobs", async () => {
    const q = pendingQueue();
    await addInParts(q, []);
    expect(q.calls).toEqual([]);
  });
});
