/** Scene sets on disk: scenes rendered to PNG files beside an `items.jsonl`. */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import { generateItem } from "../core/scenes/items.ts";
import { sceneToSvg } from "../core/scenes/svg.ts";
import type { Scene, SceneObject } from "../core/scenes/scene.ts";

/** Renders a scene to a 128×128 RGB PNG; the same scene always gives the same bytes. */
export async function renderScenePng(scene: Scene): Promise<Buffer> {
  return sharp(Buffer.from(sceneToSvg(scene)))
    .removeAlpha()
    .png({ compressionLevel: 9 })
    .toBuffer();
}

/**
 * One line of a scene set's `items.jsonl`: a manifest line (id, image, question, answer,
 * family) plus what generated it (the objects and the gold structured response).
 */
export interface SceneSetLine {
  id: string;
  image: string;
  question: string;
  answer: string;
  family: string;
  objects: SceneObject[];
  response: string;
}

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
  await writeFile(path.join(dir, "items.jsonl"), `${lines.join("\n")}\n`);
}
