import { describe, expect, it } from "vitest";
import { closeTag, isStage, openTag, parseStageBlock, parseStructured, STAGES } from "../../shared/core/protocol/stages.ts";
import { sentenceEnd } from "../../shared/core/protocol/sentences.ts";

const GOOD =
  "<SUMMARY>plan</SUMMARY><CAPTION>two red cubes</CAPTION><REASONING>2 - 1 = 1</REASONING><CONCLUSION> 1 </CONCLUSION>";

describe("stage tags", () => {
  it("names four stages in order with their tags", () => {
    expect(STAGES).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
    expect(openTag("SUMMARY")).toBe("<SUMMARY>");
    expect(closeTag("CONCLUSION")).toBe("</CONCLUSION>");
    expect(isStage("CAPTION")).toBe(true);
    expect(isStage("caption")).toBe(false);
  });
});

describe("parseStructured", () => {
  it("reads a well-formed answer", () => {
    const p = parseStructured(GOOD);
    expect(p.wellFormed).toBe(true);
    expect(p.answer).toBe("1");
    expect(p.stages).toEqual({ SUMMARY: "plan", CAPTION: "two red cubes", REASONING: "2 - 1 = 1", CONCLUSION: " 1 " });
  });

  it("allows whitespace between and around the blocks", () => {
    expect(parseStructured(`\n ${GOOD.replaceAll("><", ">\n<")} \n`).wellFormed).toBe(true);
  });

  const broken: Record<string, string> = {
    "a missing stage": GOOD.replace("<CAPTION>two red cubes</CAPTION>", ""),
    "stages out of order": "<CAPTION>c</CAPTION><SUMMARY>s</SUMMARY><REASONING>r</REASONING><CONCLUSION>1</CONCLUSION>",
    "a repeated stage": GOOD.replace("</SUMMARY>", "</SUMMARY><SUMMARY>again</SUMMARY>"),
    "text between blocks": GOOD.replace("</SUMMARY>", "</SUMMARY> and then "),
    "text before": `Sure! ${GOOD}`,
    "text after": `${GOOD} done`,
    "an unclosed stage": GOOD.replace("</CONCLUSION>", ""),
    "a nested tag": GOOD.replace("plan", "plan <CAPTION>x</CAPTION>"),
    "a stray close tag": GOOD.replace("plan", "plan </REASONING>"),
    "a mismatched close tag": GOOD.replace("</SUMMARY>", "</CAPTION>"),
    "nothing at all": "",
  };
  for (const [why, text] of Object.entries(broken)) {
    it(`is not well formed with ${why}`, () => expect(parseStructured(text).wellFormed).toBe(false));
  }

  it("still extracts the stages a broken answer closed", () => {
    const p = parseStructured("<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r is cut");
    expect(p.stages).toEqual({ SUMMARY: "s", CAPTION: "c" });
    expect(p.answer).toBeNull();
    expect(parseStructured(broken["text after"]!).answer).toBe("1");
  });
});

describe("parseStageBlock", () => {
  it("accepts exactly one block of the stage", () => {
    expect(parseStageBlock("<CAPTION>a red cube</CAPTION>", "CAPTION")).toBe("a red cube");
    expect(parseStageBlock(" <CAPTION></CAPTION>\n", "CAPTION")).toBe("");
  });
  it("rejects anything else", () => {
    expect(parseStageBlock("<CAPTION>a red cube", "CAPTION")).toBeNull();
    expect(parseStageBlock("<SUMMARY>x</SUMMARY>", "CAPTION")).toBeNull();
    expect(parseStageBlock("<CAPTION>a</CAPTION><CAPTION>b</CAPTION>", "CAPTION")).toBeNull();
    expect(parseStageBlock("x<CAPTION>a</CAPTION>", "CAPTION")).toBeNull();
    expect(parseStageBlock("<CAPTION></CAPTION", "CAPTION")).toBeNull();
  });
});

describe("sentenceEnd", () => {
  it("ends after . ? or ! followed by whitespace or an opening tag", () => {
    expect(sentenceEnd("One cube. Two")).toBe(9);
    expect(sentenceEnd("Is it red? Yes")).toBe(10);
    expect(sentenceEnd("Wow!\nok")).toBe(4);
    expect(sentenceEnd("Done.<CAPTION>")).toBe(5);
  });
  it("ends after a stage end tag, keeping a final stop before it in the same sentence", () => {
    expect(sentenceEnd("<SUMMARY>Count them.</SUMMARY><CAPTION>")).toBe("<SUMMARY>Count them.</SUMMARY>".length);
    expect(sentenceEnd("<CONCLUSION>3</CONCLUSION>")).toBe(26);
  });
  it("is not fooled by decimals and waits when the end is not yet certain", () => {
    expect(sentenceEnd("It is 3.5 wide")).toBeNull();
    expect(sentenceEnd("It is 3.")).toBeNull();
    expect(sentenceEnd("It is 3.5. Next")).toBe(10);
  });
  it("searches from an offset", () => {
    expect(sentenceEnd("A. B. C", 2)).toBe(5);
  });
});
