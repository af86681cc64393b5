import { describe, expect, it } from "vitest";
import { sentenceEnd } from "../../shared/core/protocol/sentences.ts";
import { createRng } from "../../shared/core/random.ts";
import type { Stop } from "../../shared/core/search/types.ts";
import {
  finishReason,
  keepsToken,
  StopState,
  StopTables,
  TextStopState,
  textStop,
  type StepOutcome,
} from "../../workers/engine/stops.ts";

// A tiny vocabulary: each id's text as it reads mid-sequence.
const VOCAB = [
  "<eos>",
  "<SUMMARY>",
  "</SUMMARY>",
  "<CAPTION>",
  "</CAPTION>",
  "<REASONING>",
  "</REASONING>",
  "<CONCLUSION>",
  "</CONCLUSION>",
  "There",
  " are",
  " 3",
  ".",
  "5",
  "?",
  "!",
  " objects",
  " ",
  "red",
  ",",
];
const id = (text: string) => {
  const i = VOCAB.indexOf(text);
  if (i < 0) throw new Error(text);
  return i;
};
const EOS = 0;
const tokenizer = { encode: (t: string) => [id(t)], surface: (i: number) => VOCAB[i]! };
const tables = new StopTables(tokenizer, VOCAB.length, [EOS]);
const decode = (tokens: readonly number[]) => tokens.map((t) => VOCAB[t]!).join("");

function run(stop: Stop, texts: string[], maxTokens = 50): { kept: string; outcome: StepOutcome } {
  const state = new StopState(tables.table(stop), maxTokens);
  const kept: number[] = [];
  for (const t of texts) {
    const outcome = state.advance(id(t));
    if (outcome === "continue" || outcome === "stop" || outcome === "truncated") kept.push(id(t));
    if (outcome !== "continue") return { kept: decode(kept), outcome };
  }
  return { kept: decode(kept), outcome: "continue" };
}

describe("stage stop", () => {
  const stop: Stop = { kind: "stage", stage: "SUMMARY" };
  it("stops on the stage's end tag token and keeps it", () => {
    expect(run(stop, ["<SUMMARY>", "There", " are", ".", "</SUMMARY>", "<CAPTION>"])).toEqual({
      kept: "<SUMMARY>There are.</SUMMARY>",
      outcome: "stop",
    });
  });
  it("ignores other stages' end tags and sentence ends", () => {
    expect(run(stop, ["There", ".", " are", "</CAPTION>", "</SUMMARY>"]).kept).toBe("There. are</CAPTION></SUMMARY>");
  });
  it("ends at eos without keeping it", () => {
    expect(run(stop, ["There", "<eos>", "</SUMMARY>"])).toEqual({ kept: "There", outcome: "eos" });
  });
  it("reports truncation at maxTokens", () => {
    expect(run(stop, ["There", " are", " 3", "</SUMMARY>"], 3)).toEqual({ kept: "There are 3", outcome: "truncated" });
  });
});

describe("sentence stop", () => {
  const stop: Stop = { kind: "sentence" };
  it("ends after punctuation followed by whitespace, dropping the lookahead token", () => {
    expect(run(stop, ["There", " are", " 3", ".", " objects"])).toEqual({ kept: "There are 3.", outcome: "stop-before" });
    expect(run(stop, ["There", "?", " "]).kept).toBe("There?");
  });
  it("does not end inside a number such as 3.5", () => {
    expect(run(stop, [" 3", ".", "5", " objects", "!", " are"])).toEqual({ kept: " 3.5 objects!", outcome: "stop-before" });
  });
  it("ends before an opening tag but keeps a closing tag with its sentence", () => {
    expect(run(stop, ["red", ".", "<CAPTION>"])).toEqual({ kept: "red.", outcome: "stop-before" });
    expect(run(stop, ["red", ".", "</SUMMARY>", "<CAPTION>"])).toEqual({ kept: "red.</SUMMARY>", outcome: "stop" });
  });
  it("ends at any stage end tag, </CONCLUSION> included", () => {
    expect(run(stop, ["<CONCLUSION>", " 3", "</CONCLUSION>"])).toEqual({ kept: "<CONCLUSION> 3</CONCLUSION>", outcome: "stop" });
    expect(run(stop, ["red", "</REASONING>"]).outcome).toBe("stop");
  });
  it("ends at eos", () => {
    expect(run(stop, ["red", ".", "<eos>"])).toEqual({ kept: "red.", outcome: "eos" });
  });
  it("samples one lookahead at maxTokens after punctuation", () => {
    expect(run(stop, ["There", ".", " are"], 2)).toEqual({ kept: "There.", outcome: "stop-before" });
    expect(run(stop, ["There", ".", "5"], 2)).toEqual({ kept: "There.", outcome: "truncated-before" });
    expect(run(stop, ["There", ",", " are"], 2)).toEqual({ kept: "There,", outcome: "truncated" });
  });
});

describe("end stop", () => {
  it("only stops at eos", () => {
    expect(run({ kind: "end" }, ["red", ".", " are", "</CONCLUSION>", "<eos>"])).toEqual({
      kept: "red. are</CONCLUSION>",
      outcome: "eos",
    });
  });
});

describe("token-level stops agree with the reference's whole-text check", () => {
  const stops: Stop[] = [{ kind: "stage", stage: "CAPTION" }, { kind: "sentence" }, { kind: "end" }];
  it("on random token streams", () => {
    const rng = createRng("stops");
    for (let trial = 0; trial < 3000; trial++) {
      const stop = stops[trial % stops.length]!;
      const maxTokens = rng.int(1, 12);
      // Few eos so that sequences get long.
      const stream = Array.from({ length: 20 }, () => (rng.chance(0.03) ? EOS : rng.int(1, VOCAB.length - 1)));
      const fast = new StopState(tables.table(stop), maxTokens);
      const slow = new TextStopState(stop, maxTokens, (t) => t === EOS, decode);
      const kept: number[] = [];
      let a: StepOutcome = "continue";
      let b: StepOutcome = "continue";
      for (const t of stream) {
        a = fast.advance(t);
        b = slow.advance(t);
        expect(b, `${stop.kind} ${decode(stream)}`).toBe(a);
        if (a === "continue" || a === "stop" || a === "truncated") kept.push(t);
        if (a !== "continue") break;
      }
      expect(slow.tokens).toEqual(kept);
      if (stop.kind === "sentence" && a === "stop-before") {
        // The kept text ends exactly where the shared sentence rule puts the first boundary.
        const text = decode(stream.slice(0, kept.length + 1));
        expect(sentenceEnd(text)).toBe(decode(kept).length);
      }
    }
  });
});

describe("textStop", () => {
  it("follows the stage tag and the shared sentence rule", () => {
    expect(textStop({ kind: "stage", stage: "SUMMARY" }, "<SUMMARY>x</SUMMARY>")).toBe(20);
    expect(textStop({ kind: "stage", stage: "SUMMARY" }, "<SUMMARY>x")).toBeNull();
    expect(textStop({ kind: "sentence" }, "It is 3.")).toBeNull();
    expect(textStop({ kind: "sentence" }, "It is 3. Then")).toBe(8);
    expect(textStop({ kind: "end" }, "It is 3. Then")).toBeNull();
  });
});

describe("finishReason and keepsToken", () => {
  it("a dropped lookahead keeps the reason of the rule that dropped it", () => {
    const cases: [Exclude<StepOutcome, "continue">, string, boolean][] = [
      ["stop", "stop", true],
      ["stop-before", "stop", false],
      ["eos", "eos", false],
      ["truncated", "max_tokens", true],
      ["truncated-before", "max_tokens", false],
    ];
    for (const [outcome, reason, kept] of cases) {
      expect(finishReason(outcome)).toBe(reason);
      expect(keepsToken(outcome)).toBe(kept);
    }
    expect(keepsToken("continue")).toBe(true);
  });
});
