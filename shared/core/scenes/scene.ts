import type { Rng } from "../random.ts";

export const SHAPES = ["circle", "square", "triangle"] as const;
export const COLORS = ["red", "green", "blue", "yellow", "purple", "gray"] as const;
export const SIZES = ["small", "large"] as const;
export type Shape = (typeof SHAPES)[number];
export type Color = (typeof COLORS)[number];
export type Size = (typeof SIZES)[number];

export const IMAGE_SIZE = 128;
export const MAX_OBJECTS = 8;
/** Radius in pixels of the circle each object is inscribed in. */
export const RADIUS: Record<Size, number> = { small: 7, large: 13 };

export interface SceneObject {
  shape: Shape;
  color: Color;
  size: Size;
  /** Centre in pixels. */
  x: number;
  y: number;
}

/** Objects are kept sorted left to right: captions list them in that order. */
export interface Scene {
  objects: SceneObject[];
}

export const describeObject = (o: Pick<SceneObject, "shape" | "color" | "size">): string => `${o.size} ${o.color} ${o.shape}`;

const GAP = 3;
const MARGIN = 2;

/** Places `count` non-overlapping random objects; retries placement until they fit. */
export function sampleScene(rng: Rng, count = rng.int(1, MAX_OBJECTS)): Scene {
  for (;;) {
    const objects: SceneObject[] = [];
    let attempts = 0;
    while (objects.length < count && attempts < 400) {
      attempts++;
      const size = rng.pick(SIZES);
      const r = RADIUS[size];
      const x = rng.int(r + MARGIN, IMAGE_SIZE - r - MARGIN);
      const y = rng.int(r + MARGIN, IMAGE_SIZE - r - MARGIN);
      const fits = objects.every((o) => Math.hypot(o.x - x, o.y - y) >= RADIUS[o.size] + r + GAP);
      if (fits) objects.push({ shape: rng.pick(SHAPES), color: rng.pick(COLORS), size, x, y });
    }
    if (objects.length === count) return { objects: objects.sort((a, b) => a.x - b.x || a.y - b.y) };
  }
}
