/**
 * The image policy's verdicts read the same on every run, also while many images are decoded
 * at once (submit stages 8 at a time): libvips' process-wide error text must not leak into
 * them. The chaos suite's bad-manifest scenario found the same truncated file refused with
 * "(vipspng: libpng read error)", "(Unknown error)" and the text doubled, in two runs.
 */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { imageProblem } from "../../shared/io/image-policy.ts";

describe("the image policy's messages", () => {
  it("are the same for the same bytes however many decodes run at once", async () => {
    const png = await readFile(new URL("../../apps/demo/sample/s42-000000.png", import.meta.url));
    const damaged = [0.3, 0.5, 0.7, 0.9].map((f) => png.subarray(0, Math.floor(png.length * f)));
    const flipped = Buffer.from(png);
    for (let i = 200; i < 216; i++) flipped[i] = flipped[i]! ^ 0x5a;
    damaged.push(flipped, Buffer.from("not an image"), png.subarray(0, 40));
    const alone = await Promise.all(damaged.map((b) => imageProblem(b)));
    for (const p of alone) expect(p).not.toBeNull();
    for (let round = 0; round < 3; round++) {
      const together = await Promise.all(
        Array.from({ length: 8 }, () => damaged)
          .flat()
          .map((b) => imageProblem(b)),
      );
      expect(together).toEqual(Array.from({ length: 8 }, () => alone).flat());
    }
  });
});
