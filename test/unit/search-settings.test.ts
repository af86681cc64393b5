/** Run settings: one schema, one list of judge modes, one mapping onto an item's search parameters. */
import { describe, expect, it } from "vitest";
import { paramsFor, parseSearchSettings, settingsLabel, SettingsError } from "../../shared/core/search/settings.ts";
import { parseCompare } from "../../apps/cli/commands/eval.ts";
import { apply, createSearch, next } from "../../shared/core/search/index.ts";

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
      merge: true,
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

  it("puts the run's pairwise judge in every judge request of the search", async () => {
    const judgeModes = async (judgeMode: string) => {
      let state = createSearch(paramsFor("item-1", parseSearchSettings({ ...settings, beam: 2, judgeMode })));
      const modes = new Set<unknown>();
      for (let work = next(state); work.kind !== "done"; work = next(state)) {
        if (work.kind === "judge") for (const r of work.requests) modes.add(r.mode);
        const results =
          work.kind === "generate"
            ? work.requests.map((r, i) => ({ id: r.id, text: `t${i}`, tokens: 1, truncated: false }))
            : work.requests.map((r) =>
                "kind" in r && r.kind === "check" ? { id: r.id, verdict: "correct" } : { id: r.id, verdict: 1 },
              );
        state = apply(state, results as never[]);
      }
      return [...modes];
    };
    expect(await judgeModes("score")).toEqual(["score"]);
    expect(await judgeModes("generate")).toEqual(["generate"]);
    // Only what differs from the default is kept in the parameters.
    expect(paramsFor("item-1", parseSearchSettings({ ...settings, judgeMode: "generate" }))).toMatchObject({ judge: "generate" });
    expect(paramsFor("item-1", parseSearchSettings(settings))).not.toHaveProperty("judge");
    expect(() => parseSearchSettings({ ...settings, judge: "score" })).toThrow(/unknown setting\(s\) judge/);
  });

  it("rejects an unknown setting rather than ignoring it", () => {
    expect(() => parseSearchSettings({ ...settings, beams: 4 })).toThrow(/unknown setting\(s\) beams/);
  });

  it("takes merging, resampling and stage temperatures per --compare row, and names them in the row's label", () => {
    const rows = parseCompare("stage:4:score:no-merge,stage:4:verifier:resample2@CAPTION:CAPTION=1.0,vote:4:score:no-merge", {
      seed: 1,
    });
    expect(rows.map((r) => [r.merge, r.resample, r.resampleStages, r.stageTemperature])).toEqual([
      [false, undefined, undefined, undefined],
      [true, 2, ["CAPTION"], { CAPTION: 1 }],
      [false, undefined, undefined, undefined],
    ]);
    // A vote judges nothing, so merging says nothing about it.
    expect(rows.map(settingsLabel)).toEqual([
      "stage N=4 score no-merge",
      "stage N=4 verifier resample2@CAPTION CAPTION=1",
      "vote N=4",
    ]);
    expect(() => parseCompare("stage:4:score:merge-off", { seed: 1 })).toThrow(/unknown flag merge-off/);
    expect(() => parseCompare("stage:4:score:CAPTON=1", { seed: 1 })).toThrow(/stageTemperature: unknown key\(s\) CAPTON/);
  });
});
