/**
 * Stops on tokenizers that spell the stage tags in pieces: a scripted vocabulary whose tokens can
 * straddle a tag or hold a sentence end, and the Llama-style tokenizer.json of the conformance
 * fixtures (fixtures/llama-style-tokenizer*.json: the llava folder's tokenizer files from
 * `test/conformance/make_fixtures.py OUT --family llava`, formatted by Biome). The bundled
 * tokenizer, whose tags are special tokens, keeps the id tables.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";
import { closeTag, STAGES } from "../../shared/core/protocol/stages.ts";
import { createRng } from "../../shared/core/random.ts";
import type { Stop } from "../../shared/core/search/types.ts";
import {
  keepsToken,
  keptText,
  StopTables,
  TextStopState,
  textStop,
  type StepOutcome,
  type StopTokenizer,
} from "../../workers/engine/stops.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");

interface Run {
  outcome: StepOutcome;
  kept: number[];
  /** The kept tokens' text, cut at the stop point. */
  text: string;
  /** Tokens sampled, kept or not. */
  sampled: number;
}

/** Feeds `stream` to the engine's stop state and to the reference's whole-text check. */
function runBoth(
  tables: StopTables,
  stop: Stop,
  stream: readonly number[],
  maxTokens: number,
  decode: (ids: readonly number[]) => string,
  eos: number,
): { engine: Run; reference: Run } {
  const state = tables.state(stop, maxTokens);
  const reference = new TextStopState(stop, maxTokens, (t) => t === eos, decode);
  const run = (advance: (t: number) => StepOutcome, cut: (text: string) => string): Run => {
    const kept: number[] = [];
    let outcome: StepOutcome = "continue";
    let sampled = 0;
    for (const t of stream) {
      sampled++;
      outcome = advance(t);
      if (keepsToken(outcome)) kept.push(t);
      if (outcome !== "continue") break;
    }
    return { outcome, kept, text: cut(decode(kept)), sampled };
  };
  return {
    engine: run(
      (t) => state.advance(t),
      (text) => keptText(text, state),
    ),
    reference: run(
      (t) => reference.advance(t),
      (text) => keptText(text, reference),
    ),
  };
}

// ---------------------------------------------------------------------------
// A scripted vocabulary: characters plus pieces that cross tag and sentence boundaries.

const PIECES = [
  "<eos>",
  ...[..."abcdefghijklmnopqrstuvwxyzSUMARYCPTIONEGL0123456789"],
  " ",
  "\n",
  ".",
  "?",
  "!",
  "<",
  "/",
  ">",
  "</",
  ">\n",
  ".\n",
  ". ",
  ".<",
  "3.",
  "re?",
  " are",
  " objects",
  "MMARY",
  "APTION",
  "SUM",
];
const EOS = 0;
const pieceId = new Map(PIECES.map((p, i) => [p, i]));
const byLength = [...PIECES.keys()].filter((i) => i !== EOS).sort((a, b) => PIECES[b]!.length - PIECES[a]!.length);
/** Greedy longest-match, the way a BPE vocabulary without special tags spells them. */
function encodePieces(text: string): number[] {
  const ids: number[] = [];
  for (let at = 0; at < text.length; ) {
    const id = byLength.find((i) => text.startsWith(PIECES[i]!, at));
    if (id === undefined) throw new Error(`no piece at ${JSON.stringify(text.slice(at))}`);
    ids.push(id);
    at += PIECES[id]!.length;
  }
  return ids;
}
const scripted: StopTokenizer = { encode: encodePieces, surface: (id) => PIECES[id]! };
const scriptedTables = new StopTables(scripted, PIECES.length, [EOS]);
const decodePieces = (ids: readonly number[]) => ids.map((i) => PIECES[i]!).join("");
const pieces = (...texts: string[]) =>
  texts.map((t) => {
    const id = pieceId.get(t);
    if (id === undefined) throw new Error(t);
    return id;
  });

function runScripted(stop: Stop, stream: readonly number[], maxTokens = 200): Run {
  const { engine, reference } = runBoth(scriptedTables, stop, stream, maxTokens, decodePieces, EOS);
  expect(reference).toEqual(engine);
  return engine;
}

describe("stage tags spelled in pieces", () => {
  const summary: Stop = { kind: "stage", stage: "SUMMARY" };
  it("the scripted vocabulary has no tag as one token, so the tables are not exact", () => {
    for (const stage of STAGES) expect(encodePieces(closeTag(stage)).length).toBeGreaterThan(1);
    expect(scriptedTables.exact).toEqual({ stage: false, sentence: false });
  });

  it("stops on the token that completes the end tag; the text ends with the tag", () => {
    const r = runScripted(summary, encodePieces("<SUMMARY>red objects.</SUMMARY><CAPTION>"));
    expect(r.outcome).toBe("stop");
    expect(r.text).toBe("<SUMMARY>red objects.</SUMMARY>");
    expect(decodePieces(r.kept)).toBe(r.text);
  });

  it("a tag completed inside a token still stops; the token is kept and the text cut at the tag", () => {
    const stream = [...encodePieces("<SUMMARY>x</SUMMARY"), ...pieces(">\n"), ...encodePieces("<CAPTION>")];
    const r = runScripted(summary, stream);
    expect(r.outcome).toBe("stop");
    expect(r.kept.at(-1)).toBe(pieceId.get(">\n"));
    expect(decodePieces(r.kept)).toBe("<SUMMARY>x</SUMMARY>\n");
    expect(r.text).toBe("<SUMMARY>x</SUMMARY>");
  });

  it("ignores other stages' tags and truncates at maxTokens", () => {
    const r = runScripted(summary, encodePieces("a</CAPTION>b</SUMMARY>"));
    expect(r.text).toBe("a</CAPTION>b</SUMMARY>");
    expect(runScripted(summary, encodePieces("abc</SUMMARY>"), 3)).toMatchObject({ outcome: "truncated", text: "abc" });
  });

  it("ends at eos without keeping it", () => {
    expect(runScripted(summary, [...encodePieces("a</SUM"), EOS])).toMatchObject({ outcome: "eos", text: "a</SUM" });
  });
});

describe("sentence ends on a vocabulary whose tokens straddle them", () => {
  const sentence: Stop = { kind: "sentence" };
  it("drops a lookahead that starts with whitespace", () => {
    expect(runScripted(sentence, pieces("r", "e", "d", ".", " are"))).toMatchObject({ outcome: "stop-before", text: "red." });
  });
  it("keeps a token that holds the sentence end and cuts the text there", () => {
    const r = runScripted(sentence, pieces("r", "e", "d", ".\n", "a"));
    expect(r).toMatchObject({ outcome: "stop", text: "red.", sampled: 4 });
    expect(decodePieces(r.kept)).toBe("red.\n");
  });
  it("keeps a closing tag with its sentence, even when `<` and `/` come apart", () => {
    expect(runScripted(sentence, encodePieces("red.</SUMMARY><CAPTION>")).text).toBe("red.</SUMMARY>");
    expect(runScripted(sentence, pieces("r", ".", "<", "/", "SUM", "M", "A", "R", "Y", ">", "<")).text).toBe("r.</SUMMARY>");
  });
  it("ends before an opening tag, cutting a kept `<` off the text", () => {
    const r = runScripted(sentence, pieces("r", ".", "<", "C", "APTION", ">"));
    expect(r).toMatchObject({ outcome: "stop-before", text: "r." });
    expect(decodePieces(r.kept)).toBe("r.<");
    expect(runScripted(sentence, pieces("r", ".<", "C")).text).toBe("r.");
  });
  it("does not end inside a number such as 3.5", () => {
    expect(runScripted(sentence, pieces("3.", "5", " objects", "!", " ")).text).toBe("3.5 objects!");
  });
  it("samples one lookahead at maxTokens after punctuation", () => {
    expect(runScripted(sentence, pieces("a", ".", " "), 2)).toMatchObject({ outcome: "stop-before", text: "a." });
    expect(runScripted(sentence, pieces("a", ".", "5"), 2)).toMatchObject({ outcome: "truncated-before", text: "a." });
    expect(runScripted(sentence, pieces("a", "b", "."), 2)).toMatchObject({ outcome: "truncated", text: "ab" });
  });
});

/** Random answers built from fragments that put tags and sentence ends across token boundaries. */
const FRAGMENTS = [
  "<SUMMARY>",
  "</SUMMARY>",
  "<CAPTION>",
  "</CAPTION>",
  "</REASONING>",
  "</CONCLUSION>",
  "There",
  " are",
  " 3",
  " objects",
  ".",
  ".5",
  "?",
  "!",
  " ",
  "\n",
  "red",
  "<",
  "/",
  ">",
];
function randomText(rng: ReturnType<typeof createRng>): string {
  return Array.from({ length: rng.int(1, 24) }, () => FRAGMENTS[rng.int(0, FRAGMENTS.length - 1)]!).join("");
}

const STOPS: Stop[] = [
  { kind: "stage", stage: "SUMMARY" },
  { kind: "stage", stage: "CAPTION" },
  { kind: "sentence" },
  { kind: "end" },
];

/**
 * The engine's surface rule gives the reference's outcomes and kept tokens, and a stopped text
 * ends exactly where the text rule puts the first stop in what was sampled.
 */
function checkAgreement(
  tables: StopTables,
  encode: (text: string) => number[],
  decode: (ids: readonly number[]) => string,
  eos: number,
  seed: string,
  trials: number,
) {
  const rng = createRng(seed);
  let stops = 0;
  for (let trial = 0; trial < trials; trial++) {
    const stop = STOPS[trial % STOPS.length]!;
    const stream = encode(randomText(rng));
    if (rng.chance(0.1)) stream.push(eos);
    const maxTokens = rng.int(1, 40);
    const { engine, reference } = runBoth(tables, stop, stream, maxTokens, decode, eos);
    expect(reference, `${stop.kind} ${JSON.stringify(decode(stream))}`).toEqual(engine);
    if (engine.outcome === "stop" || engine.outcome === "stop-before") {
      stops++;
      const sampledText = decode(stream.slice(0, engine.sampled));
      expect(engine.text).toBe(sampledText.slice(0, textStop(stop, sampledText)!));
    }
  }
  expect(stops).toBeGreaterThan(trials / 10);
}

describe("the surface rule agrees with the reference's whole-text check", () => {
  it("on random answers in the scripted vocabulary", () => {
    checkAgreement(scriptedTables, encodePieces, decodePieces, EOS, "pieces", 2000);
  });
});

// ---------------------------------------------------------------------------
// Real tokenizers through @huggingface/tokenizers, with the engine's surface adapter.

const DECODE = { skip_special_tokens: false, clean_up_tokenization_spaces: false } as const;

function loadTokenizer(json: string, config: string) {
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(json, "utf8")), JSON.parse(readFileSync(config, "utf8")));
  const vocab = Math.max(...tokenizer.get_vocab(true).values()) + 1;
  const encode = (text: string) => tokenizer.encode(text, { add_special_tokens: false }).ids;
  const decode = (ids: readonly number[]) => tokenizer.decode([...ids], DECODE);
  // As the engine reads them: each token's text behind an anchor, so that a leading space stays.
  const anchor = tokenizer.token_to_id("<s>") ?? tokenizer.token_to_id("<bos>")!;
  const head = decode([anchor]);
  const continuation = (ids: readonly number[]) => decode([anchor, ...ids]).slice(head.length);
  const eos = tokenizer.token_to_id("</s>") ?? tokenizer.token_to_id("<eos>")!;
  const tables = new StopTables({ encode, surface: (id) => continuation([id]) }, vocab, [eos]);
  return { encode, decode: continuation, tables, eos, tokenString: (id: number) => tokenizer.id_to_token(id) };
}

describe("a Llama-style tokenizer.json (conformance fixture)", () => {
  const fixtures = path.join(ROOT, "test/unit/fixtures");
  const llama = loadTokenizer(
    path.join(fixtures, "llama-style-tokenizer.json"),
    path.join(fixtures, "llama-style-tokenizer_config.json"),
  );

  it("spells every stage tag in several tokens", () => {
    for (const stage of STAGES) expect(llama.encode(closeTag(stage)).length).toBeGreaterThan(3);
    expect(llama.encode("</SUMMARY>").map(llama.tokenString)).toEqual(["▁", "<", "/", "S", "U", "MMARY", ">"]);
    expect(llama.tables.exact).toEqual({ stage: false, sentence: false });
  });

  it("finds the end tag and the sentence end in a tokenized answer", () => {
    const answer = "<SUMMARY>How many objects?</SUMMARY>\n<CAPTION>There are 3 objects.\nThe cube is red.</CAPTION>";
    const ids = llama.encode(answer);
    const stage = runBoth(llama.tables, { kind: "stage", stage: "SUMMARY" }, ids, 200, llama.decode, llama.eos);
    expect(stage.reference).toEqual(stage.engine);
    expect(stage.engine).toMatchObject({ outcome: "stop", text: " <SUMMARY>How many objects?</SUMMARY>" });
    const caption = runBoth(llama.tables, { kind: "stage", stage: "CAPTION" }, ids, 200, llama.decode, llama.eos);
    expect(caption.engine.text.endsWith("The cube is red.</CAPTION>")).toBe(true);
    expect(caption.engine.kept).toEqual(ids);

    const afterSummary = ids.slice(stage.engine.kept.length);
    const sentence = runBoth(llama.tables, { kind: "sentence" }, afterSummary, 200, llama.decode, llama.eos);
    expect(sentence.reference).toEqual(sentence.engine);
    expect(sentence.engine).toMatchObject({ outcome: "stop-before", text: "\n<CAPTION>There are 3 objects." });
  });

  it("agrees with the reference on random answers", () => {
    checkAgreement(llama.tables, llama.encode, llama.decode, llama.eos, "llama", 600);
  });
});

describe("the bundled tokenizer", () => {
  const model = path.join(ROOT, "models/stagebeam-tiny");
  const bundled = loadTokenizer(path.join(model, "tokenizer.json"), path.join(model, "tokenizer_config.json"));
  it("has the tags as special tokens, so the id tables decide every stop", () => {
    for (const stage of STAGES) expect(bundled.encode(closeTag(stage))).toHaveLength(1);
    expect(bundled.tables.exact).toEqual({ stage: true, sentence: true });
  });
  it("and they agree with the reference", () => {
    const words = (text: string) => bundled.encode(text.replace(/\n/g, " "));
    checkAgreement(bundled.tables, words, bundled.decode, bundled.eos, "bundled", 600);
  });
});
