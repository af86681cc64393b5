/**
 * The one image policy. Submit applies it before it uploads an image, the worker before and
 * after it downloads one, and the engine before it decodes one, all with these limits and
 * these decode settings, so an image is refused at submit exactly when a worker would refuse
 * it, and the same bytes get the same verdict on every run.
 */
import sharp, { type Metadata, type SharpOptions } from "sharp";
import { DEFAULT_IMAGE_LIMITS, IMAGE_FORMATS, type ImageLimits, sizeProblem } from "./image-limits.ts";

export { DEFAULT_IMAGE_LIMITS, type ImageLimits } from "./image-limits.ts";

/** How every decode of an item's image reads it: truncated data is an error, the pixel limit holds. */
export const decodeOptions = (limits: ImageLimits = DEFAULT_IMAGE_LIMITS): SharpOptions => ({
  limitInputPixels: limits.maxPixels,
  failOn: "truncated",
  sequentialRead: true,
});

export type HeaderCheck = { ok: true; width: number; height: number } | { ok: false; problem: string };

/** Size, header and pixel count of encoded bytes, without decoding the pixels. */
export async function checkImageHeader(bytes: Buffer, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Promise<HeaderCheck> {
  const size = sizeProblem(bytes.length, limits);
  if (size !== null) return { ok: false, problem: size };
  let meta: Metadata;
  try {
    // Header only: the pixel count is checked below, with a message that names it.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    return { ok: false, problem: `is not a readable image (${sharpReason(err)}); expected a ${IMAGE_FORMATS}` };
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width <= 0 || height <= 0) return { ok: false, problem: `has no size (${width}x${height}); expected a ${IMAGE_FORMATS}` };
  if (width * height > limits.maxPixels) {
    return {
      ok: false,
      problem: `is ${width}x${height} = ${width * height} pixels; expected at most ${limits.maxPixels} pixels`,
    };
  }
  return { ok: true, width, height };
}

/**
 * sharp's own reason, without libvips' error text after it: libvips keeps one error buffer for
 * the whole process, so under concurrent decodes that text is another image's, doubled, or
 * "Unknown error" (seen by the chaos suite's bad-manifest scenario: the same file got three
 * different messages in two runs), and a verdict must read the same on every run.
 */
const sharpReason = (err: unknown): string => (err as Error).message.split(":")[0]!.trim();

/**
 * Why the decoded pixels could not be read (truncated or corrupt), for an image whose header
 * passed. No detail: libvips' text for a failed decode is unreliable (see sharpReason).
 */
export const corruptProblem = (_err: unknown): string => `is truncated or corrupt; expected a complete ${IMAGE_FORMATS}`;

/** The whole policy on encoded bytes: the header checks, then a full decode as the engine does it. Null when the image passes. */
export async function imageProblem(bytes: Buffer, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Promise<string | null> {
  const header = await checkImageHeader(bytes, limits);
  if (!header.ok) return header.problem;
  try {
    await sharp(bytes, decodeOptions(limits)).toColourspace("srgb").removeAlpha().raw().toBuffer();
    return null;
  } catch (err) {
    return corruptProblem(err);
  }
}
