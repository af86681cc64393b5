/**
 * The verifier's scoring on scripted logits: the marked text it builds, the marker positions it
 * reads, the step scores from the good/bad logits there, and pooling. The engine underneath is
 * a double that holds the bundled tokenizer and answers readLogits from a script.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VerifyRequest } from "../../shared/core/search/types.ts";
import { stepScore } from "../../shared/core/verifier/index.ts";
import type { Engine } from "../../workers/engine/engine.ts";
import type { ItemContext } from "../../workers/engine/item.ts";
import { loadModelFolder } from "../../workers/engine/model-folder.ts";
import { EngineTokenizer } from "../../workers/engine/tokenizer.ts";
import { Verifier } from "../../workers/engine/verifier.ts";
import { selfVerifierFolder, SELF_VERIFIER_TEMPLATE } from "../support/self-verifier.ts";

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "sb-verifier-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Read {
  ids: readonly number[];
  at: readonly number[];
}

/** An engine double: the bundled tokenizer; step k of every read gets good − bad logit = script(k). */
async function scriptedEngine(dir: string, script: (read: Read, step: number) => number, contextLeft = 1000) {
  const folder = await loadModelFolder(dir);
  const tokenizer = new EngineTokenizer(folder);
  const good = tokenizer.encode("correct")[0]!;
  const bad = tokenizer.encode("incorrect")[0]!;
  const reads: Read[] = [];
  const engine = {
    folder,
    tokenizer,
    fits: (_ctx: ItemContext, n: number) => n <= contextLeft,
    async readLogits(_ctx: ItemContext, sequences: readonly Read[]) {
      reads.push(...sequences);
      return sequences.map((s) =>
        s.at.map((_, k) => {
          const row = new Float32Array(tokenizer.vocabSize);
          row[good] = script(s, k);
          row[bad] = 0;
          return row;
        }),
      );
    },
  } as unknown as Engine;
  return { verifier: await Verifier.over(engine), reads, tokenizer };
}

const CTX = {} as ItemContext;
const request = (id: string, candidate: string, extra: Partial<VerifyRequest> = {}): VerifyRequest => ({
  id,
  prefix: "<SUMMARY>I count the red objects.</SUMMARY>",
  candidate,
  stage: "CAPTION",
  ...extra,
});

describe("the verifier on scripted logits", () => {
  it("marks every step, reads the logits at each marker, and pools the step scores by min", async () => {
    const dir = await selfVerifierFolder(tmp);
    const { verifier, reads, tokenizer } = await scriptedEngine(dir, (_s, k) => [2, -1, 3][k] ?? 0);
    const caption = "<CAPTION>The red objects are: a small red circle and a large red square.</CAPTION>";
    const [result] = await verifier.verify(CTX, [request("it:CAPTION:c0-verify", caption)]);
    // caption-objects: "The red objects are:", " a small red circle", " and a large red square.</CAPTION>"
    expect(result!.steps).toEqual([stepScore(2, 0), stepScore(-1, 0), stepScore(3, 0)].map((x) => Math.round(x * 1e6) / 1e6));
    expect(result!.score).toBe(result!.steps[1]);
    const read = reads[0]!;
    const marker = tokenizer.encode("<pad>")[0]!;
    expect(read.at.map((k) => read.ids[k])).toEqual([marker, marker, marker]);
    // The accepted text comes first, unmarked; the marker follows each step's last token.
    expect(tokenizer.decode(read.ids.slice(0, read.at[0]))).toBe(
      "<SUMMARY>I count the red objects.</SUMMARY><CAPTION>The red objects are:",
    );
    expect(read.at[2]).toBe(read.ids.length - 1);
  });

  it("pools by mean or last as verifier.json says, and cuts by the stage's rule (sentences by default)", async () => {
    for (const pool of ["mean", "last"] as const) {
      const dir = await selfVerifierFolder(tmp, { ...SELF_VERIFIER_TEMPLATE, pool });
      const { verifier, reads } = await scriptedEngine(dir, (_s, k) => [1, 4][k] ?? 0);
      const [r] = await verifier.verify(CTX, [
        request("p:REASONING:c1-verify", "<REASONING>One is red. So the answer is 1.</REASONING>", { stage: "REASONING" }),
      ]);
      expect(reads[0]!.at).toHaveLength(2);
      const [a, b] = [stepScore(1, 0), stepScore(4, 0)];
      expect(r!.score).toBeCloseTo(pool === "mean" ? (a + b) / 2 : b, 5);
    }
  });

  it("scores a candidate that cannot be read 0, without a forward pass: no steps, or too long for the context", async () => {
    const dir = await selfVerifierFolder(tmp);
    const { verifier, reads } = await scriptedEngine(dir, () => 5, 20);
    const results = await verifier.verify(CTX, [
      request("e:CAPTION:c0-verify", ""),
      request("e:CAPTION:c1-verify", "<CAPTION>The red objects are: a small red circle.</CAPTION>"),
    ]);
    expect(results.map((r) => [r.score, r.steps])).toEqual([
      [0, []],
      [0, []],
    ]);
    expect(results[1]!.detail).toEqual({ skipped: expect.stringMatching(/does not fit the context window/) });
    expect(reads).toHaveLength(0);
  });

  it("refuses a text that holds the marker itself, naming the request", async () => {
    const dir = await selfVerifierFolder(tmp);
    const { verifier } = await scriptedEngine(dir, () => 0);
    await expect(verifier.verify(CTX, [request("m:CAPTION:c0-verify", "<CAPTION>a<pad> b.</CAPTION>")])).rejects.toThrow(
      /verify request m:CAPTION:c0-verify: the marker "<pad>" appears 2 times .* expected 1/,
    );
  });
});

describe("verifier.json", () => {
  it("a folder without it is refused, naming the file", async () => {
    const dir = await selfVerifierFolder(tmp, null);
    await expect(scriptedEngine(dir, () => 0)).rejects.toThrow(
      /^verifier\.json: missing; a verifier folder holds verifier\.json/,
    );
  });

  it("a marker, good or bad text that is not one token of the vocabulary is refused, naming the file and the field", async () => {
    const cases = [
      [{ marker: "<step>" }, /verifier\.json: marker "<step>" is 3 tokens/],
      [{ good: "Richtig" }, /verifier\.json: good "Richtig" is the token "<unk>"/],
      [{ bad: "correct" }, /verifier\.json: good and bad are the same token/],
      [{ pool: "max" }, /verifier\.json: pool: /],
      [{ marker: undefined }, /verifier\.json: marker: /],
    ] as const;
    for (const [change, message] of cases) {
      const dir = await selfVerifierFolder(tmp, { ...SELF_VERIFIER_TEMPLATE, ...change });
      await expect(scriptedEngine(dir, () => 0)).rejects.toThrow(message);
    }
    const broken = await selfVerifierFolder(tmp);
    await writeFile(path.join(broken, "verifier.json"), "{ not json");
    await expect(scriptedEngine(broken, () => 0)).rejects.toThrow(/verifier\.json: expected valid JSON/);
  });
});
