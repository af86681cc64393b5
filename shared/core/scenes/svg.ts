import { IMAGE_SIZE, RADIUS, type Color, type Scene, type SceneObject } from "./scene.ts";

const BACKGROUND = "#d6d6d6";
const FILL: Record<Color, string> = {
  red: "#d62828",
  green: "#2a9d3a",
  blue: "#2f55d4",
  yellow: "#e9c81d",
  purple: "#8e3bbf",
  gray: "#7a7a7a",
};

function shapeSvg(o: SceneObject): string {
  const r = RADIUS[o.size];
  const fill = FILL[o.color];
  switch (o.shape) {
    case "circle":
      return `<circle cx="${o.x}" cy="${o.y}" r="${r}" fill="${fill}"/>`;
    case "square": {
      const half = Math.round(r * 0.85);
      return `<rect x="${o.x - half}" y="${o.y - half}" width="${2 * half}" height="${2 * half}" fill="${fill}"/>`;
    }
    case "triangle": {
      const top = `${o.x},${o.y - r}`;
      const left = `${(o.x - r * 0.95).toFixed(2)},${(o.y + r * 0.75).toFixed(2)}`;
      const right = `${(o.x + r * 0.95).toFixed(2)},${(o.y + r * 0.75).toFixed(2)}`;
      return `<polygon points="${top} ${left} ${right}" fill="${fill}"/>`;
    }
  }
}

export function sceneToSvg(scene: Scene): string {
  const shapes = scene.objects.map(shapeSvg).join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${IMAGE_SIZE}" height="${IMAGE_SIZE}"><rect width="100%" height="100%" fill="${BACKGROUND}"/>${shapes}</svg>`;
}
