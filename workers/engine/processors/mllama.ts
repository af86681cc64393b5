/**
 * Llama-3.2-Vision (mllama): transformers' MllamaImageProcessor and MllamaProcessor
 * (image_processing_mllama.py, processing_mllama.py) written here, since transformers.js 4.3 has
 * neither. The image is resized to fit the best canvas of up to `max_image_tiles` tiles (the
 * smallest upscale, else the largest downscale; ties to the smaller canvas), padded right and
 * bottom with zeros, rescaled and normalised, cut into tiles row by row and padded with empty
 * tiles to `max_image_tiles`; the canvas shape gives the aspect-ratio id and the real tiles the
 * aspect-ratio mask. The prompt holds one `<|image|>` token and is not expanded: the image reaches
 * the decoder by cross-attention from that token on (backend.ts builds the mask per sequence).
 *
 * Resizing is PIL's bilinear filter, which transformers uses (Image.resize, resample 2), written
 * here in float arithmetic where PIL uses fixed point: a value may differ by one level where it
 * lands within rounding distance of a half (test/conformance/mllama.test.ts). sharp's kernels
 * place pixel centres differently when enlarging.
 */
import type { ImageLimits } from "../../../shared/io/image-policy.ts";
import type { MllamaPreprocessorConfig } from "../model-schemas.ts";
import { COUNTED_POSITIONS } from "../positions.ts";
import type { EngineTokenizer } from "../tokenizer.ts";
import type { ProcessedItem, Processor } from "./processor.ts";
import { countId, requireOneImageToken } from "./prompt-checks.ts";
import { readItemImage } from "./transformers-js.ts";

/** transformers' order of tile arrangements: products a x b <= maxTiles, `a` in the outer loop. The id of [rows, cols] is its index + 1. */
export function supportedAspectRatios(maxTiles: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 1; a <= maxTiles; a++) for (let b = 1; b <= maxTiles; b++) if (a * b <= maxTiles) out.push([a, b]);
  return out;
}

/** The canvas [height, width] in pixels the image is fitted to (get_optimal_tiled_canvas). */
export function optimalCanvas(height: number, width: number, maxTiles: number, tile: number): [number, number] {
  const canvases = supportedAspectRatios(maxTiles).map(([a, b]) => [a * tile, b * tile] as [number, number]);
  const scales = canvases.map(([h, w]) => Math.min(h / height, w / width));
  const up = scales.filter((s) => s >= 1);
  const chosen = up.length > 0 ? Math.min(...up) : Math.max(...scales);
  let best: [number, number] | null = null;
  canvases.forEach((c, i) => {
    if (scales[i] === chosen && (best === null || c[0] * c[1] < best[0] * best[1])) best = c;
  });
  return best!;
}

/** The image's size inside the canvas, aspect kept (get_image_size_fit_to_canvas). */
export function fitToCanvas(height: number, width: number, canvas: [number, number], tile: number): [number, number] {
  const targetW = Math.min(Math.max(width, tile), canvas[1]);
  const targetH = Math.min(Math.max(height, tile), canvas[0]);
  const scaleH = targetH / height;
  const scaleW = targetW / width;
  if (scaleW < scaleH) return [Math.min(Math.floor(height * scaleW) || 1, targetH), targetW];
  return [targetH, Math.min(Math.floor(width * scaleH) || 1, targetW)];
}

export interface MllamaImage {
  /** [1, maxTiles, 3, tile, tile]. */
  pixelValues: Float32Array;
  dims: number[];
  aspectRatioId: number;
  /** [maxTiles]: 1 for each real tile. */
  aspectRatioMask: number[];
  tiles: number;
  resized: [number, number];
}

/**
 * One axis of PIL's bilinear resample (ImagingResample, `bilinear_filter`): output pixel i takes
 * the triangle-weighted input pixels around (i + 0.5) x scale, the triangle widened by the scale
 * when shrinking; rounded half up and clipped to a byte.
 */
function resampleAxis(src: Uint8Array, outer: number, inSize: number, inner: number, outSize: number): Uint8Array {
  const out = new Uint8Array(outer * outSize * inner);
  const scale = inSize / outSize;
  const support = Math.max(scale, 1);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights: number[] = [];
    let total = 0;
    for (let x = lo; x < hi; x++) {
      const w = Math.max(0, 1 - Math.abs((x - center + 0.5) / support));
      weights.push(w);
      total += w;
    }
    for (let j = 0; j < weights.length; j++) weights[j]! /= total;
    for (let o = 0; o < outer; o++) {
      for (let k = 0; k < inner; k++) {
        let sum = 0;
        for (let x = lo; x < hi; x++) sum += weights[x - lo]! * src[(o * inSize + x) * inner + k]!;
        out[(o * outSize + i) * inner + k] = Math.min(255, Math.max(0, Math.floor(sum + 0.5)));
      }
    }
  }
  return out;
}

/** An RGB image [height, width, 3] resized with PIL's bilinear filter: horizontal pass, then vertical. */
export function resizeBilinear(rgb: Uint8Array, height: number, width: number, newHeight: number, newWidth: number): Uint8Array {
  const across = newWidth === width ? rgb : resampleAxis(rgb, height, width, 3, newWidth);
  return newHeight === height ? across : resampleAxis(across, 1, height, newWidth * 3, newHeight);
}

/** One RGB image (uint8, [height, width, 3]) as MllamaImageProcessor.preprocess makes it. */
export function preprocessMllama(rgb: Uint8Array, height: number, width: number, pre: MllamaPreprocessorConfig): MllamaImage {
  const tile = pre.size.height;
  const maxTiles = pre.max_image_tiles;
  const canvas = optimalCanvas(height, width, maxTiles, tile);
  const [rows, cols] = [canvas[0] / tile, canvas[1] / tile];
  const [h, w] = pre.do_resize ? fitToCanvas(height, width, canvas, tile) : [height, width];
  const pixels = resizeBilinear(rgb, height, width, h, w);
  const mean = Array.isArray(pre.image_mean) ? pre.image_mean : [pre.image_mean, pre.image_mean, pre.image_mean];
  const std = Array.isArray(pre.image_std) ? pre.image_std : [pre.image_std, pre.image_std, pre.image_std];
  const scale = pre.do_rescale ? pre.rescale_factor : 1;
  const value = (v: number, c: number) => (pre.do_normalize ? (v * scale - mean[c]!) / std[c]! : v * scale);
  const out = new Float32Array(maxTiles * 3 * tile * tile);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const t = r * cols + c;
      for (let ch = 0; ch < 3; ch++) {
        const base = (t * 3 + ch) * tile * tile;
        for (let y = 0; y < tile; y++) {
          const py = r * tile + y;
          for (let x = 0; x < tile; x++) {
            const px = c * tile + x;
            // Padding is zero before rescaling and normalising, as transformers pads first.
            const v = py < h && px < w ? pixels[(py * w + px) * 3 + ch]! : 0;
            out[base + y * tile + x] = value(v, ch);
          }
        }
      }
    }
  }
  const tiles = rows * cols;
  const aspectRatioId = supportedAspectRatios(maxTiles).findIndex(([a, b]) => a === rows && b === cols) + 1;
  return {
    pixelValues: out,
    dims: [1, maxTiles, 3, tile, tile],
    aspectRatioId,
    aspectRatioMask: Array.from({ length: maxTiles }, (_, i) => (i < tiles ? 1 : 0)),
    tiles,
    resized: [h, w],
  };
}

export function mllamaProcessor(
  tokenizer: EngineTokenizer,
  pre: MllamaPreprocessorConfig,
  imageToken: string,
  limits?: ImageLimits,
): Processor {
  const expand = (prompt: string) => tokenizer.encodePrompt(prompt);
  return {
    modelType: "mllama",
    imageToken,
    async process(itemId, image, prompt): Promise<ProcessedItem> {
      requireOneImageToken(itemId, prompt, imageToken);
      const raw = (await readItemImage(itemId, image, limits)).rgb();
      const data = raw.data as Uint8ClampedArray;
      const img = preprocessMllama(new Uint8Array(data.buffer, data.byteOffset, data.length), raw.height, raw.width, pre);
      const inputIds = expand(prompt);
      const { imageTokenId } = tokenizer;
      return {
        inputIds,
        imageTokenId,
        imageTokenCount: countId(inputIds, imageTokenId),
        pixelValues: { data: img.pixelValues, dims: img.dims },
        crossImage: { aspectRatioId: img.aspectRatioId, aspectRatioMask: img.aspectRatioMask, tiles: img.tiles },
        expand,
        positions: COUNTED_POSITIONS,
      };
    },
  };
}
