/**
 * Idefics3 / SmolVLM: the tile prompt expansion of Idefics3Processor and transformers.js's tokenizer,
 * over an image processor that resizes, splits and normalises in Python transformers' order.
 *
 * Python (`Idefics3ImageProcessor.preprocess`, transformers/models/idefics3/image_processing_idefics3.py)
 * resizes the 8-bit image three times (longest edge, vision-encoder multiple, global tile), then
 * composites it on white, rescales and normalises each tile. transformers.js 4.3
 * (src/models/idefics3/image_processing_idefics3.js) rescales and normalises first and does the last
 * two resizes bilinearly on the float tensor (`interpolate_4d`), drops alpha instead of compositing,
 * sizes the longest-edge resize with `floor(x.toFixed(2))` and no even bump, and squeezes an unsplit
 * image to one square tile that Python leaves as resized.
 */
import { Idefics3ImageProcessor, RawImage, Tensor } from "@huggingface/transformers";
import type { ImageLimits } from "../../../shared/io/image-policy.ts";
import { COUNTED_POSITIONS } from "../positions.ts";
import type { ProcessedItem, Processor } from "./processor.ts";
import { countId, requireOneImageToken } from "./prompt-checks.ts";
import { boolTensor, expandingTokenizer, floatTensor, loadTransformersProcessor, readItemImage } from "./transformers-js.ts";

const IMAGE_TOKEN = "<image>";
const FAKE_TOKEN = "<fake_token_around_image>";
const GLOBAL_IMAGE_TOKEN = "<global-img>";
/** Python's absolute cap on the longest-edge resize (`MAX_IMAGE_SIZE`). */
const MAX_IMAGE_SIZE = 4096;

/**
 * Python's longest-edge size (`_resize_output_size_rescale_to_max_len`, then
 * `_resize_output_size_scale_below_upper_bound`): the long side becomes `longestEdge`, the short
 * side `int()` of the scaled length, bumped to even when odd. 200×120 at 96: 96×58 (JS 96×57).
 */
export function idefics3LongestEdgeSize(height: number, width: number, longestEdge: number): [number, number] {
  const aspect = width / height;
  let h: number;
  let w: number;
  if (width >= height) {
    w = longestEdge;
    h = Math.trunc(w / aspect);
    if (h % 2 !== 0) h++;
  } else {
    h = longestEdge;
    w = Math.trunc(h * aspect);
    if (w % 2 !== 0) w++;
  }
  h = Math.max(h, 1);
  w = Math.max(w, 1);
  if (Math.max(h, w) > MAX_IMAGE_SIZE) {
    const scaledAspect = w / h;
    if (w >= h) {
      w = MAX_IMAGE_SIZE;
      h = Math.max(Math.trunc(w / scaledAspect), 1);
    } else {
      h = MAX_IMAGE_SIZE;
      w = Math.max(Math.trunc(h * scaledAspect), 1);
    }
  }
  return [h, w];
}

/** Python's `resize_for_vision_encoder` size: both sides up to multiples of the tile, the short one via the aspect ratio. */
export function idefics3VisionEncoderSize(height: number, width: number, tile: number): [number, number] {
  const aspect = width / height;
  if (width >= height) {
    const w = Math.ceil(width / tile) * tile;
    return [Math.ceil(Math.trunc(w / aspect) / tile) * tile, w];
  }
  const h = Math.ceil(height / tile) * tile;
  return [h, Math.ceil(Math.trunc(h * aspect) / tile) * tile];
}

/** Python's `convert_to_rgb`: alpha composited on a white background (transformers.js drops the alpha). */
function rgbOnWhite(image: RawImage): RawImage {
  if (image.channels !== 2 && image.channels !== 4) return image.rgb();
  const colour = image.channels === 4 ? 3 : 1;
  const out = new Uint8ClampedArray(image.width * image.height * 3);
  for (let p = 0, i = 0; p < out.length; p += 3, i += image.channels) {
    const alpha = image.data[i + colour]! / 255;
    for (let c = 0; c < 3; c++) out[p + c] = image.data[i + (colour === 3 ? c : 0)]! * alpha + 255 * (1 - alpha);
  }
  return new RawImage(out, image.width, image.height, 3);
}

function cropTile(image: RawImage, top: number, left: number, height: number, width: number): RawImage {
  const out = new Uint8ClampedArray(height * width * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * image.width + left) * 3;
    out.set(image.data.subarray(from, from + width * 3), y * width * 3);
  }
  return new RawImage(out, width, height, 3);
}

interface Normalisation {
  rescaleFactor: number;
  mean: number[];
  std: number[];
}

/**
 * A tile to CHW float32 as numpy does it: rescale in float64 and cast (`rescale`), then subtract and
 * divide in float32 with float32 mean and std (`normalize` casts them to the image's dtype).
 */
function normaliseTile(tile: RawImage, n: Normalisation, out: Float32Array, offset: number): void {
  const plane = tile.width * tile.height;
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const mean = f(n.mean[c]!);
    const std = f(n.std[c]!);
    for (let i = 0; i < plane; i++) {
      const scaled = f(tile.data[i * 3 + c]! * n.rescaleFactor);
      out[offset + c * plane + i] = f(f(scaled - mean) / std);
    }
  }
}

/**
 * The text that stands for the image in the prompt (`get_image_prompt_string` in Python's and
 * transformers.js's processing_idefics3): per tile `<fake_token_around_image><row_r_col_c>` and
 * `imageSeqLen` image tokens, a newline after each row, then the global image; an unsplit image
 * (rows = cols = 0) is the global image alone.
 */
export function idefics3ImageText(rows: number, cols: number, imageSeqLen: number): string {
  const tokens = IMAGE_TOKEN.repeat(imageSeqLen);
  const global = `${FAKE_TOKEN}${GLOBAL_IMAGE_TOKEN}${tokens}${FAKE_TOKEN}`;
  if (rows === 0 && cols === 0) return global;
  let text = "";
  for (let r = 1; r <= rows; r++) {
    for (let c = 1; c <= cols; c++) text += `${FAKE_TOKEN}<row_${r}_col_${c}>${tokens}`;
    text += "\n";
  }
  return `${text}\n${global}`;
}

class PythonOrderIdefics3ImageProcessor extends Idefics3ImageProcessor {
  override async _call(images: RawImage | RawImage[] | RawImage[][]) {
    const image = Array.isArray(images) ? images.flat() : [images];
    if (image.length !== 1 || image[0] === undefined) throw new Error("one image per prompt is supported");
    // Pillow resizes RGBA premultiplied, so compositing before the resizes agrees with Python's after, up to rounding.
    const source = rgbOnWhite(image[0]);
    const resample = this.resample as 0 | 1 | 2 | 3 | 4 | 5;
    let resized = source;
    if (this.do_resize) {
      const [h, w] = idefics3LongestEdgeSize(source.height, source.width, this.size.longest_edge);
      resized = await source.resize(w, h, { resample });
    }
    const tile: number = this.max_image_size.longest_edge;
    let tiles: RawImage[] = [resized];
    let rows = 0;
    let cols = 0;
    if (this.do_image_splitting) {
      const [h, w] = idefics3VisionEncoderSize(resized.height, resized.width, tile);
      const grid = await resized.resize(w, h, { resample });
      if (h > tile || w > tile) {
        rows = Math.ceil(h / tile);
        cols = Math.ceil(w / tile);
        tiles = [];
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) tiles.push(cropTile(grid, r * tile, c * tile, tile, tile));
        }
        tiles.push(await grid.resize(tile, tile, { resample }));
      } else {
        tiles = [grid];
      }
    }
    const { width, height } = tiles[0]!;
    const data = new Float32Array(tiles.length * 3 * height * width);
    const normalisation: Normalisation = {
      rescaleFactor: this.do_rescale ? this.rescale_factor : 1,
      mean: this.do_normalize ? this.image_mean : [0, 0, 0],
      std: this.do_normalize ? this.image_std : [1, 1, 1],
    };
    tiles.forEach((t, i) => {
      normaliseTile(t, normalisation, data, i * 3 * height * width);
    });
    const dims = [1, tiles.length, 3, height, width];
    return {
      pixel_values: new Tensor("float32", data, dims),
      pixel_attention_mask: new Tensor("bool", new Uint8Array(tiles.length * height * width).fill(1), [
        1,
        tiles.length,
        height,
        width,
      ]),
      original_sizes: [[source.height, source.width] as [number, number]],
      reshaped_input_sizes: [[resized.height, resized.width] as [number, number]],
      rows: [[rows]],
      cols: [[cols]],
    };
  }
}

export interface Idefics3Config {
  image_token_id: number;
  /** processor_config.json's image tokens per tile. */
  image_seq_len: number;
}

export async function loadIdefics3Processor(dir: string, config: Idefics3Config, limits?: ImageLimits): Promise<Processor> {
  const { imageProcessor: baseImageProcessor, tokenizer } = await loadTransformersProcessor(dir);
  const imageProcessor = new PythonOrderIdefics3ImageProcessor(baseImageProcessor.config);
  const imageTokenId = config.image_token_id;
  return {
    modelType: "idefics3",
    imageToken: IMAGE_TOKEN,
    async process(itemId, image, prompt): Promise<ProcessedItem> {
      requireOneImageToken(itemId, prompt, IMAGE_TOKEN);
      const raw = await readItemImage(itemId, image, limits);
      const out = await imageProcessor(raw);
      const expand = expandingTokenizer(
        tokenizer,
        IMAGE_TOKEN,
        idefics3ImageText(out.rows[0]![0]!, out.cols[0]![0]!, config.image_seq_len),
      );
      const inputIds = expand(prompt);
      return {
        inputIds,
        imageTokenId,
        imageTokenCount: countId(inputIds, imageTokenId),
        pixelValues: floatTensor(out.pixel_values),
        pixelAttentionMask: boolTensor(out.pixel_attention_mask),
        expand,
        positions: COUNTED_POSITIONS,
      };
    },
  };
}
