/** `stagebeam eval` on a user's own set: any manifest the fleet takes, with bad lines reported by line and field. */
import { copyFile, mkdir, mkdtemp, readFile, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { DEMO_SAMPLE } from "../../apps/cli/commands/demo.ts";
import { runCli } from "../support/cli.ts";

const IMAGES = ["s42-000001.png", "s42-000002.png", "s42-000003.png"];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "cli-eval-"));
  for (const name of IMAGES) await copyFile(path.join(DEMO_SAMPLE, name), path.join(dir, name));
});

describe("stagebeam eval --set", () => {
  it("takes a folder whose items.jsonl has only id, image, question and answer, and names each bad line's field", async () => {
    const lines = [
      { id: "img.1", image: IMAGES[0], question: "Are there more green objects than red objects?", answer: "yes" },
      { id: "img 2", image: IMAGES[1], question: "What shape is the red object?", answer: "triangle" },
      { id: "no-gold", image: IMAGES[2], question: "What color is the circle?" },
      { id: "missing-image", image: "nope.png", question: "How many?", answer: "1" },
    ];
    await writeFile(path.join(dir, "items.jsonl"), `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
    const r = await runCli(["eval", "--set", dir, "--strategy", "none"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^2 items from .* \(2 bad lines skipped\), seed 1/);
    expect(r.stdout).toMatch(/none\s+\d+\.\d% \[/);
    expect(r.stdout).not.toMatch(/accuracy per family/);
    expect(r.stdout).not.toMatch(/items that failed/);
    expect(r.stderr).toMatch(/line 3, item "no-gold", field "answer": missing; expected the gold answer/);
    expect(r.stderr).toMatch(/line 4, item "missing-image", field "image": file not found/);
  });

  it("takes a CSV manifest and prints the per-family table when the items have a family", async () => {
    const csv = [
      "id,image,question,answer,family",
      `a,${IMAGES[0]},Are there more green objects than red objects?,yes,compare`,
      `b,${IMAGES[1]},What shape is the red object?,triangle,attribute`,
    ].join("\n");
    const file = path.join(dir, "set.csv");
    await writeFile(file, `${csv}\n`);
    const r = await runCli(["eval", "--set", file, "--strategy", "none"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^2 items from .*set\.csv, seed 1/);
    expect(r.stdout).toMatch(/accuracy per family:\nfamily\s+n\s+none\s*\nattribute\s+1\s+\d+\.\d%\s*\ncompare\s+1\s+\d+\.\d%/);
  });

  it("refuses a set with no usable item, and a path that does not exist, as usage errors", async () => {
    const file = path.join(dir, "bad.csv");
    await writeFile(file, "id,picture,question\nx,y,z\n");
    const r = await runCli(["eval", "--set", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/header.*missing column image/);
    const missing = await runCli(["eval", "--set", path.join(dir, "nothing-here")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--set .*nothing-here: no such file or folder/);
  });

  it("reports a duplicate id like a bad line, takes images through symlinks inside --image-root, and writes one line per item with --out", async () => {
    // The set's images are symlinks into a data folder beside it, as a shared data folder is.
    const root = await mkdtemp(path.join(tmpdir(), "cli-eval-root-"));
    await mkdir(path.join(root, "data"));
    await mkdir(path.join(root, "set"));
    for (const name of IMAGES.slice(0, 2)) {
      await copyFile(path.join(DEMO_SAMPLE, name), path.join(root, "data", name));
      await symlink(path.join("..", "data", name), path.join(root, "set", name));
    }
    const lines = [
      {
        id: "u1",
        image: IMAGES[0],
        question: "Are there more green objects than red objects?",
        answer: "yes",
        family: "compare",
      },
      { id: "u2", image: IMAGES[1], question: "What shape is the red object?", answer: "triangle" },
      { id: "u1", image: IMAGES[1], question: "What shape is the red object?", answer: "triangle" },
    ];
    await writeFile(path.join(root, "set", "items.jsonl"), `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
    const set = path.join(root, "set");

    const confined = await runCli(["eval", "--set", set, "--strategy", "none"]);
    expect(confined.code).toBe(2);
    expect(confined.stderr).toMatch(
      /line 1, item "u1", field "image": path "s42-000001.png" leads through a symlink to .*data\/s42-000001.png, outside the image root .*set \(--image-root DIR widens it\); skipped/,
    );

    const out = path.join(root, "per-item.jsonl");
    const r = await runCli(["eval", "--set", set, "--image-root", root, "--strategy", "none", "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/line 3, item "u1", field "id": got the id of line 1 again; expected each id once; skipped/);
    expect(r.stdout).toMatch(/^2 items from .* \(1 bad lines skipped\)/);
    const rows = (await readFile(out, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.map((x) => [x.id, x.family, x.gold])).toEqual([
      ["u1", "compare", "yes"],
      ["u2", null, "triangle"],
    ]);
    for (const x of rows) {
      expect(x).toMatchObject({ search: "none", correct: x.answer === x.gold, error: null, candidates: 1 });
      for (const stage of ["summary", "caption", "reasoning", "conclusion"]) expect(typeof x[stage]).toBe("string");
      expect(x.tokens).toBeGreaterThan(0);
    }

    const csv = await runCli([
      "eval",
      "--set",
      set,
      "--image-root",
      root,
      "--strategy",
      "none",
      "--out",
      path.join(root, "x.txt"),
    ]);
    expect(csv.code).toBe(2);
    expect(csv.stderr).toMatch(/--out .*x\.txt: expected a file name ending in \.jsonl, \.ndjson or \.csv/);
  });
});
