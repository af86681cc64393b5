/**
 * Image preprocessing per preprocessor_config.json, as Hugging Face image processors do it:
 * convert to RGB, resize to `size`, rescale, normalize, lay out CHW float32. Bad input
 * (empty, corrupt, truncated, not an image, too large) gets an ItemInputError that names the
 * item and what was expected.
 */
import sharp from "sharp";
import type { KernelEnum, OutputInfo } from "sharp";
import {
  checkImageHeader,
  corruptProblem,
  DEFAULT_IMAGE_LIMITS,
  decodeOptions,
  type ImageLimits,
} from "../../shared/io/image-policy.ts";
import { ItemInputError } from "./errors.ts";
import type { PreprocessorSpec } from "./model-folder.ts";

/** PIL resample codes → sharp kernels. */
function kernelFor(resample: number): keyof KernelEnum {
  switch (resample) {
    case 0:
      return "nearest";
    case 1:
      return "lanczos3";
    case 2:
      return "linear";
    default:
      return "cubic";
  }
}

/** An image whose bytes passed the checks below: its encoded bytes and its decoded size, read from the header. */
export interface CheckedImage {
  bytes: Buffer;
  width: number;
  height: number;
}

/**
 * Checks an item's image before it is decoded: the bytes of a readable image within the limits.
 * Throws an ItemInputError that names the item and what was expected.
 */
export async function checkImage(
  itemId: string,
  image: unknown,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<CheckedImage> {
  if (!(image instanceof Uint8Array)) {
    throw new ItemInputError(
      itemId,
      "image",
      `expected the image file's bytes (a Buffer), got ${image === null ? "null" : typeof image}`,
    );
  }
  const bytes = Buffer.isBuffer(image) ? image : Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  const header = await checkImageHeader(bytes, limits);
  if (!header.ok) throw new ItemInputError(itemId, "image", header.problem);
  return { bytes, width: header.width, height: header.height };
}

/** The ItemInputError for an image that passed checkImage but failed to decode. */
export function corruptImageError(itemId: string, err: unknown): ItemInputError {
  return new ItemInputError(itemId, "image", corruptProblem(err));
}

/**
 * Decodes and preprocesses one image into pixel values `[3, height, width]` (float32), ready
 * for the vision encoder's `pixel_values`.
 */
export async function preprocessImage(
  itemId: string,
  image: unknown,
  spec: PreprocessorSpec,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<Float32Array> {
  const fail = (problem: string) => new ItemInputError(itemId, "image", problem);
  const { bytes, width, height } = await checkImage(itemId, image, limits);
  if (!spec.doResize && (width !== spec.width || height !== spec.height)) {
    throw fail(`is ${width}x${height}; expected ${spec.width}x${spec.height} (the model does not resize)`);
  }
  const open = () => sharp(bytes, decodeOptions(limits));

  let data: Buffer;
  let info: OutputInfo;
  try {
    let pipeline = open().toColourspace("srgb").removeAlpha();
    if (width !== spec.width || height !== spec.height) {
      pipeline = pipeline.resize(spec.width, spec.height, { fit: "fill", kernel: kernelFor(spec.resample) });
    }
    ({ data, info } = await pipeline.raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw corruptImageError(itemId, err);
  }
  if (info.channels !== 3 || info.width !== spec.width || info.height !== spec.height) {
    throw fail(`decoded to ${info.width}x${info.height}x${info.channels}; expected ${spec.width}x${spec.height}x3`);
  }

  const plane = spec.width * spec.height;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const mean = spec.doNormalize ? spec.mean[c]! : 0;
    const std = spec.doNormalize ? spec.std[c]! : 1;
    const scale = spec.doRescale ? spec.rescaleFactor : 1;
    const base = c * plane;
    // Computed in float64 and rounded once to float32, as numpy-based processors do.
    for (let i = 0; i < plane; i++) out[base + i] = (data[i * 3 + c]! * scale - mean) / std;
  }
  return out;
}
