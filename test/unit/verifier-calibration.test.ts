/** A verifier's own score statistics: measured from scores, kept in verifier.json, checked on read. */
import { describe, expect, it } from "vitest";
import { calibrationOf, VerifierTemplateSchema } from "../../shared/core/verifier/index.ts";

const from = { items: 2, set: "/sets/calib", seed: 1, policy: "sha256:abc" };
const base = { format: "stagebeam-verifier/1", marker: "<step>", good: "<+>", bad: "<->" };

describe("verifier calibration", () => {
  it("is the mean and population sd of the scores, with where they came from", () => {
    expect(calibrationOf([0.2, 0.4, 0.6, 0.8], from)).toEqual({
      stage: "REASONING",
      mean: 0.5,
      sd: 0.223607,
      scores: 4,
      ...from,
    });
    expect(calibrationOf([0.7], from)).toMatchObject({ mean: 0.7, sd: 0, scores: 1 });
    expect(() => calibrationOf([], from)).toThrow(/no scores/);
  });

  it("is read from verifier.json, and a bad one is refused naming the field", () => {
    const calibration = calibrationOf([0.25, 0.75], from);
    expect(VerifierTemplateSchema.parse({ ...base, calibration }).calibration).toEqual(calibration);
    expect(VerifierTemplateSchema.parse(base).calibration).toBeUndefined();
    const bad = VerifierTemplateSchema.safeParse({ ...base, calibration: { ...calibration, sd: -1 } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(["calibration", "sd"]);
  });
});
