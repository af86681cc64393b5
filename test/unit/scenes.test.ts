import { mkdtemp, readFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { parseStructured } from "../../shared/core/protocol/stages.ts";
import { createRng } from "../../shared/core/random.ts";
import { readEvalSet } from "../../shared/io/eval-set.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { matches } from "../../shared/core/scenes/filters.ts";
import { generateItem } from "../../shared/core/scenes/items.ts";
import { JUDGE_KINDS, makeCheckExample, makeJudgePair } from "../../shared/core/scenes/judge-pairs.ts";
import { FAMILIES } from "../../shared/core/scenes/questions.ts";
import { MAX_OBJECTS, RADIUS } from "../../shared/core/scenes/scene.ts";

const items = Array.from({ length: 400 }, (_, i) => generateItem(11, i));

describe("scene generator", () => {
  it("is deterministic: the same seed writes byte-identical PNG and JSONL", async () => {
    const [a, b] = await Promise.all([mkdtemp(path.join(tmpdir(), "scenes-a-")), mkdtemp(path.join(tmpdir(), "scenes-b-"))]);
    await writeSceneSet(a, { count: 12, seed: 5 });
    await writeSceneSet(b, { count: 12, seed: 5 });
    const files = (await readdir(a)).sort();
    expect(files).toEqual((await readdir(b)).sort());
    expect(files).toHaveLength(13);
    for (const file of files) expect(await readFile(path.join(a, file))).toEqual(await readFile(path.join(b, file)));
    const other = await mkdtemp(path.join(tmpdir(), "scenes-c-"));
    await writeSceneSet(other, { count: 12, seed: 6 });
    expect(await readFile(path.join(other, "items.jsonl"), "utf8")).not.toEqual(
      await readFile(path.join(a, "items.jsonl"), "utf8"),
    );
  });

  it("writes 128×128 RGB PNGs that readEvalSet finds again", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "scenes-"));
    await writeSceneSet(dir, { count: 3, seed: 9 });
    const set = await readEvalSet(dir);
    expect(set.items).toHaveLength(3);
    expect(set.badLines).toEqual([]);
    const meta = await sharp(set.items[0]!.imagePath).metadata();
    expect([meta.width, meta.height, meta.format, meta.channels]).toEqual([128, 128, "png", 3]);
  });

  it("every gold response parses into the four stages with the gold answer in CONCLUSION", () => {
    for (const item of items) {
      const parsed = parseStructured(item.response);
      expect(parsed.wellFormed, item.response).toBe(true);
      expect(parsed.answer).toBe(item.answer);
    }
  });

  it("covers all question families, each with a multiple-choice variant", () => {
    const families = new Set(items.map((i) => i.family));
    for (const family of FAMILIES) {
      expect(families).toContain(family);
      expect(families).toContain(`${family}-mc`);
    }
  });

  it("places 1–8 non-overlapping objects inside the image", () => {
    for (const { scene } of items) {
      expect(scene.objects.length).toBeGreaterThanOrEqual(1);
      expect(scene.objects.length).toBeLessThanOrEqual(MAX_OBJECTS);
      scene.objects.forEach((a, i) => {
        for (const b of scene.objects.slice(i + 1)) {
          expect(Math.hypot(a.x - b.x, a.y - b.y)).toBeGreaterThan(RADIUS[a.size] + RADIUS[b.size]);
        }
      });
    }
  });

  it("answers counting questions with the true count", () => {
    for (const item of items) {
      if (item.spec.family !== "count" || item.spec.options) continue;
      const { filter } = item.spec;
      expect(item.answer).toBe(String(item.scene.objects.filter((o) => matches(o, filter)).length));
    }
  });
});

describe("judge pairs", () => {
  it("pairs a gold candidate with a different, wrong one for every kind", () => {
    const rng = createRng(3);
    const seen = new Set<string>();
    for (const item of items.slice(0, 100)) {
      for (const kind of JUDGE_KINDS) {
        const pair = makeJudgePair(rng, kind, item.spec, item.scene);
        if (!pair) continue;
        seen.add(kind);
        expect(pair.bad).not.toBe(pair.good);
        if (kind !== "all" && kind !== "sentence") expect(item.response).toContain(pair.hint + pair.good);
        if (kind === "sentence") expect(item.response.startsWith(pair.hint + pair.good)).toBe(true);
        if (kind === "all") expect(pair.good).toBe(item.response);
      }
    }
    expect([...seen].sort()).toEqual([...JUDGE_KINDS].sort());
  });

  it("labels the gold reasoning correct and a corrupted one incorrect", () => {
    const rng = createRng(4);
    let correct = 0;
    let incorrect = 0;
    for (const item of items.slice(0, 100)) {
      const example = makeCheckExample(rng, item.spec, item.scene);
      if (!example) continue;
      const inGold = item.response.includes(example.candidate);
      expect(inGold).toBe(example.correct);
      if (example.correct) correct++;
      else incorrect++;
    }
    expect(correct).toBeGreaterThan(20);
    expect(incorrect).toBeGreaterThan(20);
  });
});
