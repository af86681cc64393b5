/** Run settings: one schema, one list of judge modes, one mapping onto an item's search parameters. */
import { describe, expect, it } from "vitest";
import { paramsFor, parseSearchSettings, SettingsError } from "../../shared/core/search/settings.ts";
import { createSearch } from "../../shared/core/search/index.ts";

const settings = { strategy: "stage", beam: 4, seed: 0, judgeMode: "score" };

describe("search settings", () => {
  it("rejects unknown strategies, beams below 1 and unknown judge modes with clear messages", () => {
    expect(parseSearchSettings(settings)).toEqual({
      strategy: "stage",
      beam: 4,
      seed: 0,
      judgeMode: "score",
      maxStageTokens: 512,
      maxSentenceSteps: 40,
      merge: true,
    });
    expect(() => parseSearchSettings({ ...settings, strategy: "beam" })).toThrow(
      new SettingsError(
        'invalid search settings: strategy must be one of none, best-of-n, sentence, stage, greedy, vote, vote-weighted, swires, got "beam"',
      ),
    );
    expect(() => parseSearchSettings({ ...settings, beam: 0 })).toThrow(/beam must be an integer >= 1, got 0/);
    expect(() => parseSearchSettings({ ...settings, seed: -1 })).toThrow(/seed must be a non-negative safe integer, got -1/);
    expect(() => parseSearchSettings({ ...settings, judgeMode: "vote" })).toThrow(
      /judge mode must be one of score, generate, verifier, got "vote"/,
    );
    expect(() => parseSearchSettings({ ...settings, maxStageTokens: 0 })).toThrow(/maxStageTokens must be an integer >= 1/);
    expect(() => parseSearchSettings({ ...settings, merge: "no" })).toThrow(/merge must be true or false, got "no"/);
  });

  it("needs no item id, and maps onto every search parameter of an item", () => {
    const checked = parseSearchSettings({ ...settings, maxStageTokens: 64, maxSentenceSteps: 7 });
    const params = paramsFor("item-1", checked);
    expect(params).toEqual({
      itemId: "item-1",
      strategy: "stage",
      beam: 4,
      seed: 0,
      maxStageTokens: 64,
      maxSentenceSteps: 7,
      merge: true,
    });
    expect(createSearch(params).params).toEqual(params);
  });

  it("rejects an unknown setting rather than ignoring it", () => {
    expect(() => parseSearchSettings({ ...settings, beams: 4 })).toThrow(/unknown setting\(s\) beams/);
  });
});
