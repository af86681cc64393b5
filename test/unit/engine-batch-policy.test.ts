import { describe, expect, it } from "vitest";
import { chooseDecodeBatch, chooseNextCall, choosePrefillBatch, MAX_PREFILL_PADDING } from "../../workers/engine/batch-policy.ts";

const rows = (...fresh: number[]) => fresh.map((n) => ({ past: 0, fresh: n }));

describe("choosePrefillBatch", () => {
  it("always leads with the oldest queued row, even when shorter rows wait behind it", () => {
    expect(choosePrefillBatch(rows(100, 10, 10), 16384)).toEqual([0]);
    expect(choosePrefillBatch(rows(10, 100, 100), 16384)).toEqual([0]);
    expect(choosePrefillBatch([], 16384)).toEqual([]);
  });

  it("admits a row only while padding stays within 25% of the real tokens", () => {
    expect(MAX_PREFILL_PADDING).toBe(0.25);
    // 2 × 20 slots for 30 real tokens is 33% padding; 2 × 16 for 26 is 23%.
    expect(choosePrefillBatch(rows(10, 20, 16), 16384)).toEqual([0, 2]);
  });

  it("takes the rows closest in length to the oldest first, ties in queue order", () => {
    expect(choosePrefillBatch(rows(10, 12, 11, 11), 16384)).toEqual([0, 2, 3, 1]);
  });

  it("keeps rows × (past + new) within the slot limit; a single larger row runs alone", () => {
    expect(choosePrefillBatch(rows(40, 40, 40), 100)).toEqual([0, 1]);
    expect(
      choosePrefillBatch(
        [
          { past: 30, fresh: 40 },
          { past: 0, fresh: 40 },
        ],
        100,
      ),
    ).toEqual([0]);
    expect(choosePrefillBatch(rows(500, 1), 100)).toEqual([0]);
  });
});

describe("chooseDecodeBatch", () => {
  const row = (length: number, maxLength = 64) => ({ length, maxLength });

  it("keeps the running rows and fills up to maxBatch from the front of the waiting ones", () => {
    expect(chooseDecodeBatch([row(5), row(6)], [row(1), row(2), row(3)], 4)).toEqual({
      stay: [0, 1],
      join: [0, 1],
      endRunning: [],
      endWaiting: [],
    });
  });

  it("ends rows without room for another position, which take no batch slot", () => {
    expect(chooseDecodeBatch([row(64), row(6)], [row(63, 63), row(2), row(3)], 2)).toEqual({
      stay: [1],
      join: [1],
      endRunning: [0],
      endWaiting: [0],
    });
  });
});

describe("chooseDecodeBatch within a KV budget", () => {
  const row = (length: number, maxLength = 64) => ({ length, maxLength });

  it("admits waiting rows only while rows × positions after the step fit the slots", () => {
    // Running rows of 5 and 6 positions: 2 × 7 = 14 slots; a third row of 9 makes 3 × 10 = 30.
    expect(chooseDecodeBatch([row(5), row(6)], [row(9), row(1)], 8, 29).join).toEqual([]);
    expect(chooseDecodeBatch([row(5), row(6)], [row(9), row(1)], 8, 30).join).toEqual([0]);
    expect(chooseDecodeBatch([row(5), row(6)], [row(9), row(1)], 8, 40).join).toEqual([0, 1]);
  });

  it("keeps the running rows, and lets one row run alone, whatever the budget", () => {
    expect(chooseDecodeBatch([row(5), row(6)], [row(1)], 8, 0)).toEqual({
      stay: [0, 1],
      join: [],
      endRunning: [],
      endWaiting: [],
    });
    expect(chooseDecodeBatch([], [row(9), row(1)], 8, 0).join).toEqual([0]);
  });
});

describe("chooseNextCall", () => {
  it("alternates prefill and decode while both have work, prefill first", () => {
    expect(chooseNextCall(true, true, null)).toBe("prefill");
    expect(chooseNextCall(true, true, "prefill")).toBe("decode");
    expect(chooseNextCall(true, true, "decode")).toBe("prefill");
    expect(chooseNextCall(true, false, "prefill")).toBe("prefill");
    expect(chooseNextCall(false, true, "decode")).toBe("decode");
    expect(chooseNextCall(false, false, "decode")).toBeNull();
  });
});
