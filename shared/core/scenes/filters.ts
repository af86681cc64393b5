import type { Color, SceneObject, Shape, Size } from "./scene.ts";

/** A set of required attributes; at least one is given. */
export interface Filter {
  size?: Size;
  color?: Color;
  shape?: Shape;
}

export const matches = (o: SceneObject, f: Filter): boolean =>
  (f.size === undefined || o.size === f.size) &&
  (f.color === undefined || o.color === f.color) &&
  (f.shape === undefined || o.shape === f.shape);

const words = (f: Filter): string[] => [f.size, f.color].flatMap((w) => (w === undefined ? [] : [w]));

/** "small red triangles", "red objects" */
export const plural = (f: Filter): string => [...words(f), f.shape ? `${f.shape}s` : "objects"].join(" ");

/** "small red triangle", "red object" */
export const singular = (f: Filter): string => [...words(f), f.shape ?? "object"].join(" ");

/** "a small red circle", "a X and a Y", "a X, a Y and a Z" */
export function listObjects(objects: readonly SceneObject[]): string {
  const phrases = objects.map((o) => `a ${o.size} ${o.color} ${o.shape}`);
  if (phrases.length <= 1) return phrases.join("");
  return `${phrases.slice(0, -1).join(", ")} and ${phrases.at(-1)}`;
}
