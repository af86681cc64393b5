/**
 * The limits of the one image policy (image-policy.ts), apart from the decoding so that what
 * only needs a size (submit with s3:// images, a worker before a download) loads no libvips.
 */

export interface ImageLimits {
  /** Largest encoded image accepted, in bytes. */
  maxBytes: number;
  /** Largest decoded image accepted, in pixels (width × height); also sharp's limitInputPixels. */
  maxPixels: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = { maxBytes: 20 * 1024 * 1024, maxPixels: 40_000_000 };

export const IMAGE_FORMATS = "PNG, JPEG, WebP, GIF, AVIF or TIFF image";

export function describeBytes(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} bytes`;
}

/** The problem with an encoded size, or null. Checked before any byte is read where the size is known first. */
export function sizeProblem(bytes: number, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): string | null {
  if (bytes === 0) return `is empty (0 bytes); expected a ${IMAGE_FORMATS}`;
  if (bytes > limits.maxBytes) return `is ${describeBytes(bytes)}; expected at most ${describeBytes(limits.maxBytes)}`;
  return null;
}
