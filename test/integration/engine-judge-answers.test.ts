/**
 * The score judge's teacher-forced answers on the bundled model: logits read on top of the
 * prompt's KV match those of the longer prompts, in both work patterns, and a judge whose choices
 * take two tokens each (sharing the first) gives the scores of the one-token choices at their cost.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JudgeTemplates } from "../../shared/core/prompts/templates.ts";
import { generateItem } from "../../shared/core/scenes/items.ts";
import type { JudgeRequest } from "../../shared/core/search/types.ts";
import { renderScenePng } from "../../shared/io/scene-files.ts";
import { Engine } from "../../workers/engine/engine.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const MODEL = path.join(ROOT, "models/stagebeam-tiny");
const TOL = 1e-4;

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

const item = generateItem(2000, 0);
const image = await renderScenePng(item.scene);
const open = (engine: Engine) => engine.openItem({ id: item.id, image, question: item.question });

const a = "<SUMMARY>I will count the red objects.</SUMMARY>";
const b = "<SUMMARY>I will look at the shapes.</SUMMARY>";
const requests: JudgeRequest[] = [
  { id: "i:SUMMARY:c0-vs-c1", kind: "compare", template: "SUMMARY", hint: "", first: a, second: b },
  { id: "i:SUMMARY:c1-vs-c0", kind: "compare", template: "SUMMARY", hint: "", first: b, second: a },
  {
    id: "i:REASONING:c0-check",
    kind: "check",
    template: "reasoning_check",
    hint: a,
    candidate: "<REASONING>1 + 1 = 2.</REASONING>",
  },
];

describe("teacher-forced judge answers on the bundled model", () => {
  let engine: Engine;
  let reference: Engine;
  let twoTokenChoices: Engine;
  let dir: string;
  beforeAll(async () => {
    engine = await Engine.load(MODEL, { maxBatch: 16 });
    reference = await Engine.load(MODEL, { reference: true });
    // The same model, its verdict prefix one word shorter: each choice is ` response 1` (two tokens).
    dir = mkdtempSync(path.join(os.tmpdir(), "stagebeam-judge-"));
    cpSync(MODEL, dir, { recursive: true });
    const templates: JudgeTemplates = { ...engine.folder.judgeTemplates };
    templates.verdict_prefix = "I choose";
    templates.choices = { "1": " response 1", "2": " response 2" };
    writeFileSync(path.join(dir, "judge_templates.json"), JSON.stringify(templates, null, 2));
    twoTokenChoices = await Engine.load(dir, { maxBatch: 16 });
  });
  afterAll(async () => {
    await Promise.all([engine?.close(), reference?.close(), twoTokenChoices?.close()]);
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("reads each answer token from the logits of the prompt extended by the tokens before it", async () => {
    const ctx = await open(engine);
    const ctxR = await open(reference);
    const prompt = [...ctx.promptIds, ...engine.tokenizer.encode("<SUMMARY>I will")];
    const answers = [engine.tokenizer.encode(" count the red objects"), engine.tokenizer.encode(" count the shapes")];
    const backend = engine.internals.backend;
    const [teacher] = await backend.answerLogits(ctx, [{ ids: prompt, answers }]);
    const [slow] = await reference.internals.backend.answerLogits(ctxR, [{ ids: prompt, answers }]);
    for (const [i, answer] of answers.entries()) {
      expect(teacher![i]).toHaveLength(answer.length);
      for (let k = 0; k < answer.length; k++) {
        const [[[direct]]] = (await backend.answerLogits(ctx, [
          { ids: [...prompt, ...answer.slice(0, k)], answers: [[answer[k]!]] },
        ])) as [[[Float32Array]]];
        expect(maxDiff(teacher![i]![k]!, direct)).toBeLessThan(TOL);
        expect(maxDiff(slow![i]![k]!, direct)).toBeLessThan(TOL);
      }
    }
    // The shared first token is read once.
    expect(teacher![0]![1]).toBe(teacher![1]![1]);
    engine.closeItem(ctx);
    reference.closeItem(ctxR);
  });

  it("a judge whose choices share their first token scores as the one with one-token choices", async () => {
    expect(twoTokenChoices.tokenizer.encode(" response 1")).toHaveLength(2);
    const ctx = await open(engine);
    const ctx2 = await open(twoTokenChoices);
    const one = await engine.judge(ctx, requests, "score");
    const two = await twoTokenChoices.judge(ctx2, requests, "score");
    for (const [i, r] of one.entries()) {
      expect(two[i]!.verdict).toBe(r.verdict);
      for (const key of ["score", "forward", "swapped", "correct", "incorrect"] as const) {
        const x = (r.detail as Record<string, number | undefined>)[key];
        if (x !== undefined) expect((two[i]!.detail as Record<string, number>)[key]).toBeCloseTo(x, 4);
      }
    }
    engine.closeItem(ctx);
    twoTokenChoices.closeItem(ctx2);
  });

  it("runs the choices' shared first token in the prompt's row: the calls and positions of one-token choices", async () => {
    // The two-token judge's prompt + ` response` is the one-token judge's prompt, token for token.
    expect(twoTokenChoices.tokenizer.encode("I choose response")).toEqual([
      ...twoTokenChoices.tokenizer.encode("I choose"),
      twoTokenChoices.tokenizer.encode(" response 1")[0],
    ]);
    const cost = async (e: Engine) => {
      const ctx = await open(e);
      const before = e.counters();
      await e.judge(ctx, requests, "score");
      const after = e.counters();
      e.closeItem(ctx);
      return { calls: after.decoderCalls - before.decoderCalls, positions: after.prefillTokens - before.prefillTokens };
    };
    const one = await cost(engine);
    // The prompts' shared prefix, then every prompt's own tail in one batched call.
    expect(one.calls).toBe(2);
    expect(await cost(twoTokenChoices)).toEqual(one);
  });
});
