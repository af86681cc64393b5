/** Run settings: one schema, one list of judge modes, one mapping onto an item's search parameters. */
import { describe, expect, it } from "vitest";
import { paramsFor, parseSearchSettings, SettingsError } from "../../shared/core/search/settings.ts";
import { createSearch, next } from "../../shared/core/search/index.ts";

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
  });

  it("needs no item id, and maps onto every search parameter of an item", () => {
    const checked = parseSearchSettings({ ...settings, maxStageTokens: 64, maxSentenceSteps: 7 });
    const params = paramsFor("item-1", checked);
    expect(params).toEqual({ itemId: "item-1", strategy: "stage", beam: 4, seed: 0, maxStageTokens: 64, maxSentenceSteps: 7 });
    expect(createSearch(params).params).toEqual(params);
  });

  it("takes an item's own seed, stage cap, temperature and top_p over the run's, and its candidates are drawn with them", () => {
    const run = parseSearchSettings(settings);
    const params = paramsFor("item-1", run, { seed: 9, maxStageTokens: 32, temperature: 0.3, topP: 0.5 });
    expect(params).toEqual({
      itemId: "item-1",
      strategy: "stage",
      beam: 4,
      seed: 9,
      maxStageTokens: 32,
      maxSentenceSteps: 40,
      temperature: 0.3,
      topP: 0.5,
    });
    const work = next(createSearch(params));
    expect(work.kind).toBe("generate");
    if (work.kind !== "generate") return;
    expect(work.requests).toHaveLength(4);
    for (const r of work.requests) {
      expect(r).toMatchObject({ maxTokens: 32, temperature: 0.3, topP: 0.5 });
      expect(r.sampleKey.startsWith("9/")).toBe(true);
    }
    // Without its own settings an item's requests name no sampling: the model's applies.
    const plain = next(createSearch(paramsFor("item-1", run)));
    if (plain.kind !== "generate") throw new Error("expected generate work");
    expect(plain.requests[0]).not.toHaveProperty("temperature");
    expect(plain.requests[0]).toMatchObject({ maxTokens: 512 });
    expect(() => createSearch(paramsFor("item-1", run, { temperature: 3 }))).toThrow(/temperature must be a number from 0 to 2/);
  });

  it("rejects an unknown setting rather than ignoring it", () => {
    expect(() => parseSearchSettings({ ...settings, beams: 4 })).toThrow(/unknown setting\(s\) beams/);
  });
});
