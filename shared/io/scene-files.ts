/** Scene sets on disk: scenes rendered to PNG files beside an `items.jsonl`. */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import { z } from "zod";
import { generateItem } from "../core/scenes/items.ts";
import { sceneToSvg } from "../core/scenes/svg.ts";
import type { Scene } from "../core/scenes/scene.ts";
import { COLORS, SHAPES, SIZES } from "../core/scenes/scene.ts";

/** Renders a scene to a 128×128 RGB PNG; the same scene always gives the same bytes. */
export async function renderScenePng(scene: Scene): Promise<Buffer> {
  return sharp(Buffer.from(sceneToSvg(scene)))
    .removeAlpha()
    .png({ compressionLevel: 9 })
    .toBuffer();
}

/** One line of a scene set's `items.jsonl`. */
export const SceneSetLine = z.object({
  id: z.string().min(1),
  image: z.string().min(1),
  question: z.string().min(1),
  answer: z.string().min(1),
  family: z.string().min(1),
  objects: z.array(z.object({ shape: z.enum(SHAPES), color: z.enum(COLORS), size: z.enum(SIZES), x: z.number(), y: z.number() })),
  response: z.string().min(1),
});
export type SceneSetLine = z.infer<typeof SceneSetLine>;

export interface WriteOptions {
  count: number;
  seed: number;
  onItem?: (done: number) => void;
}

/** Writes `<id>.png` files and `items.jsonl` to `dir`; same seed and count → identical bytes. */
export async function writeSceneSet(dir: string, { count, seed, onItem }: WriteOptions): Promise<void> {
  await mkdir(dir, { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const item = generateItem(seed, i);
    const image = `${item.id}.png`;
    await writeFile(path.join(dir, image), await renderScenePng(item.scene));
    const line: SceneSetLine = {
      id: item.id,
      image,
      question: item.question,
      answer: item.answer,
      family: item.family,
      objects: item.scene.objects,
      response: item.response,
    };
    lines.push(JSON.stringify(line));
    onItem?.(i + 1);
  }
  await writeFile(path.join(dir, "items.jsonl"), lines.join("\n") + "\n");
}

/** Reads a scene set, naming the line and field of anything malformed. */
export async function readSceneSet(dir: string): Promise<(SceneSetLine & { imagePath: string })[]> {
  const file = path.join(dir, "items.jsonl");
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new Error(`${file}: cannot read the scene set (${error.code ?? error.message}); expected PNG files and items.jsonl`);
  });
  return text
    .split("\n")
    .map((raw, index) => ({ raw, lineNumber: index + 1 }))
    .filter(({ raw }) => raw.trim() !== "")
    .map(({ raw, lineNumber }) => {
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        throw new Error(`${file}:${lineNumber}: not valid JSON`);
      }
      const parsed = SceneSetLine.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new Error(`${file}:${lineNumber}: field '${issue.path.join(".")}': ${issue.message}`);
      }
      return { ...parsed.data, imagePath: path.join(dir, parsed.data.image) };
    });
}
