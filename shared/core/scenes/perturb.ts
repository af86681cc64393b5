import type { Rng } from "../random.ts";
import { COLORS, SHAPES, SIZES, type Scene, type SceneObject } from "./scene.ts";

/**
 * The scene as a careless observer might have seen it: one object missed, one imagined, or
 * one with a wrong colour, shape or size. Positions are kept, so captions keep their order.
 */
export function perturbScene(rng: Rng, scene: Scene): Scene {
  const objects = scene.objects.map((o) => ({ ...o }));
  const op = rng.pick(["drop", "add", "change", "change"] as const);
  if (op === "drop" && objects.length > 1) {
    objects.splice(rng.int(0, objects.length - 1), 1);
  } else if (op === "add" || objects.length === 0) {
    const template = rng.pick(objects);
    const extra: SceneObject = { ...template, x: rng.int(0, 127), y: rng.int(0, 127) };
    if (rng.chance(0.5)) extra.size = rng.pick(SIZES);
    objects.push(extra);
    objects.sort((a, b) => a.x - b.x || a.y - b.y);
  } else {
    const target = objects[rng.int(0, objects.length - 1)]!;
    const attribute = rng.pick(["color", "shape", "size"] as const);
    if (attribute === "color") target.color = rng.pick(COLORS.filter((c) => c !== target.color));
    if (attribute === "shape") target.shape = rng.pick(SHAPES.filter((s) => s !== target.shape));
    if (attribute === "size") target.size = target.size === "small" ? "large" : "small";
  }
  return { objects };
}
