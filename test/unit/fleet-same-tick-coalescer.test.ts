import { describe, expect, it } from "vitest";
import { BadInputError } from "../../workers/fleet/protocol/index.ts";
import { SameTickCoalescer } from "../../workers/fleet/worker/same-tick-coalescer.ts";

describe("same-tick coalescer", () => {
  it("retries a failed batch one by one when the failure is one request's bad input", async () => {
    const calls: string[][] = [];
    const c = new SameTickCoalescer<{ id: string }, { id: string }>(async (reqs) => {
      calls.push(reqs.map((r) => r.id));
      if (reqs.some((r) => r.id === "bad")) throw new BadInputError("bad-request", "bad one");
      return reqs;
    });
    const out = await Promise.allSettled(["x", "bad", "y"].map((id) => c.submit({ id })));
    expect(out.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(calls).toEqual([["x", "bad", "y"], ["x"], ["bad"], ["y"]]);
  });

  it("fails every request of a batch on a transient error, and rejects a missing result", async () => {
    const c = new SameTickCoalescer<{ id: string }, { id: string }>(async () => {
      throw new Error("engine crashed");
    });
    await expect(Promise.all([c.submit({ id: "a" }), c.submit({ id: "b" })])).rejects.toThrow(/engine crashed/);
    const d = new SameTickCoalescer<{ id: string }, { id: string }>(async (reqs) => reqs.slice(1));
    const r = await Promise.allSettled([d.submit({ id: "a" }), d.submit({ id: "b" })]);
    expect(r[0]).toMatchObject({ status: "rejected", reason: { message: "the model host returned no result for a" } });
    expect(r[1]).toMatchObject({ status: "fulfilled" });
  });

  it("never puts the same id twice into one batch", async () => {
    const batches: string[][] = [];
    const c = new SameTickCoalescer<{ id: string }, { id: string }>(async (reqs) => {
      batches.push(reqs.map((r) => r.id));
      return reqs;
    });
    await Promise.all([c.submit({ id: "a" }), c.submit({ id: "a" }), c.submit({ id: "b" })]);
    expect(batches).toEqual([["a", "b"], ["a"]]);
  });
});
