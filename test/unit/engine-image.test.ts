import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { ItemInputError } from "../../workers/engine/errors.ts";
import { preprocessImage } from "../../workers/engine/image.ts";
import type { PreprocessorSpec } from "../../workers/engine/model-folder.ts";

const SPEC: PreprocessorSpec = {
  height: 2,
  width: 2,
  doResize: true,
  resample: 3,
  doRescale: true,
  rescaleFactor: 1 / 255,
  doNormalize: true,
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
};

// 2×2 RGB: red, green / blue, (10, 128, 250)
const PIXELS = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 128, 250];
const png = (pixels: number[], width: number, height: number, channels: 1 | 3 | 4 = 3) =>
  sharp(Buffer.from(pixels), { raw: { width, height, channels } }).png().toBuffer();

async function errorOf(p: Promise<unknown>): Promise<ItemInputError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ItemInputError);
    return err as ItemInputError;
  }
  throw new Error("expected an error");
}

describe("preprocessImage values", () => {
  it("rescales, normalises and lays out CHW float32 for a tiny known PNG", async () => {
    const out = await preprocessImage("tiny", await png(PIXELS, 2, 2), SPEC);
    const expected = new Float32Array(12);
    for (let c = 0; c < 3; c++) for (let i = 0; i < 4; i++) expected[c * 4 + i] = (PIXELS[i * 3 + c]! / 255 - 0.5) / 0.5;
    expect(out).toEqual(expected);
    expect(out[0]).toBe(1); // red channel of the red pixel
    expect(out[4]).toBe(-1); // green channel of the red pixel
  });

  it("uses per-channel mean and std and can skip rescaling", async () => {
    const spec = {
      ...SPEC,
      doRescale: false,
      mean: [1, 2, 3] as [number, number, number],
      std: [2, 4, 8] as [number, number, number],
    };
    const out = await preprocessImage("tiny", await png(PIXELS, 2, 2), spec);
    expect(out[0]).toBe((255 - 1) / 2);
    expect(out[4 + 1]).toBe((255 - 2) / 4);
    expect(out[8 + 3]).toBe(Math.fround((250 - 3) / 8));
  });

  it("converts grayscale and RGBA to RGB and resizes to the model's size", async () => {
    const gray = await preprocessImage("gray", await png([0, 255, 255, 0], 2, 2, 1), SPEC);
    expect(Array.from(gray.subarray(0, 4))).toEqual([-1, 1, 1, -1]);
    expect(Array.from(gray.subarray(8, 12))).toEqual([-1, 1, 1, -1]);
    const rgba = await preprocessImage(
      "rgba",
      await png([255, 0, 0, 0, 0, 255, 0, 255, 0, 0, 255, 9, 1, 2, 3, 4], 2, 2, 4),
      SPEC,
    );
    expect(rgba[0]).toBe(1); // alpha is dropped, not composited
    const big = await preprocessImage(
      "big",
      await png(
        Array.from({ length: 16 * 16 * 3 }, (_, i) => i % 256),
        16,
        16,
      ),
      SPEC,
    );
    expect(big.length).toBe(3 * 2 * 2);
    expect(big.every((v) => v >= -1 && v <= 1)).toBe(true);
  });
});

describe("preprocessImage errors", () => {
  it("rejects a zero-byte image", async () => {
    const e = await errorOf(preprocessImage("item-1", Buffer.alloc(0), SPEC));
    expect(e.message).toMatch(/item "item-1": image: is empty \(0 bytes\); expected a PNG/);
    expect(e.itemId).toBe("item-1");
    expect(e.field).toBe("image");
  });

  it("rejects bytes that are not an image", async () => {
    const e = await errorOf(preprocessImage("item-2", Buffer.from("hello, this is a text file\n"), SPEC));
    expect(e.message).toMatch(/item "item-2": image: is not a readable image \(.+\); expected a PNG, JPEG/);
  });

  it("rejects corrupt image data", async () => {
    const good = await png(
      Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 7) % 256),
      32,
      32,
    );
    const bad = Buffer.from(good);
    for (let i = 60; i < bad.length - 20; i++) bad[i] = (bad[i]! * 31 + 7) % 256;
    const e = await errorOf(preprocessImage("item-3", bad, SPEC));
    expect(e.message).toMatch(/item "item-3": image: /);
    expect(e.message).toMatch(/expected a (complete )?PNG/);
  });

  it("rejects a truncated image", async () => {
    const good = await png(
      Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 13) % 256),
      64,
      64,
    );
    const e = await errorOf(preprocessImage("item-4", good.subarray(0, Math.floor(good.length / 2)), SPEC));
    expect(e.message).toMatch(/item "item-4": image: is truncated or corrupt; expected a complete PNG/);
  });

  it("rejects images over the byte limit and over the pixel limit", async () => {
    const image = await png(
      Array.from({ length: 40 * 30 * 3 }, (_, i) => i % 256),
      40,
      30,
    );
    const bytes = await errorOf(preprocessImage("item-5", image, SPEC, { maxBytes: 100, maxPixels: 1e6 }));
    expect(bytes.message).toMatch(/item "item-5": image: is \d+ bytes; expected at most 100 bytes/);
    const pixels = await errorOf(preprocessImage("item-6", image, SPEC, { maxBytes: 1e6, maxPixels: 1000 }));
    expect(pixels.message).toMatch(/item "item-6": image: is 40x30 = 1200 pixels; expected at most 1000 pixels/);
  });

  it("rejects something that is not bytes at all", async () => {
    const e = await errorOf(preprocessImage("item-7", "picture.png", SPEC));
    expect(e.message).toMatch(/expected the image file's bytes \(a Buffer\), got string/);
  });

  it("rejects a wrong size when the model does not resize", async () => {
    const e = await errorOf(preprocessImage("item-8", await png(Array(27).fill(9), 3, 3), { ...SPEC, doResize: false }));
    expect(e.message).toMatch(/is 3x3; expected 2x2/);
  });
});
