"""An independent numpy implementation of transformers' MllamaImageProcessor (image_processing_mllama.py) and of the
cross-attention mask of MllamaProcessor (processing_mllama.py), for the conformance test to compare the engine's
TypeScript processor with. Hugging Face itself is not run here (it cannot be installed on this machine).

Resizing: transformers resizes with PIL's bilinear filter (a triangle widened by the shrink factor, pixel centres at
+0.5, horizontal pass then vertical, uint8 after each). This writes that filter in float arithmetic, where PIL uses
22-bit fixed point, so a value landing within rounding distance of .5 may differ by one level."""

import math

import numpy as np


def supported_aspect_ratios(max_tiles: int) -> list[tuple[int, int]]:
    """transformers' order: an outer loop over the first number, an inner over the second, products <= max_tiles."""
    return [(a, b) for a in range(1, max_tiles + 1) for b in range(1, max_tiles + 1) if a * b <= max_tiles]


def optimal_canvas(height: int, width: int, max_tiles: int, tile: int) -> tuple[int, int]:
    canvases = [(a * tile, b * tile) for a, b in supported_aspect_ratios(max_tiles)]
    scales = [min(ch / height, cw / width) for ch, cw in canvases]
    up = [s for s in scales if s >= 1]
    chosen = min(up) if up else max(scales)
    best = None
    for canvas, s in zip(canvases, scales):
        if s == chosen and (best is None or canvas[0] * canvas[1] < best[0] * best[1]):
            best = canvas
    return best


def fit_to_canvas(height: int, width: int, canvas_h: int, canvas_w: int, tile: int) -> tuple[int, int]:
    target_w = min(max(width, tile), canvas_w)
    target_h = min(max(height, tile), canvas_h)
    scale_h, scale_w = target_h / height, target_w / width
    if scale_w < scale_h:
        return min(math.floor(height * scale_w) or 1, target_h), target_w
    return target_h, min(math.floor(width * scale_h) or 1, target_w)


def bilinear_1d(src: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """PIL's separable triangle filter along one axis (support widened by the shrink factor)."""
    in_size = src.shape[axis]
    scale = in_size / out_size
    support = max(scale, 1.0)
    out_shape = list(src.shape)
    out_shape[axis] = out_size
    out = np.zeros(out_shape, dtype=np.float64)
    moved = np.moveaxis(src.astype(np.float64), axis, 0)
    dst = np.moveaxis(out, axis, 0)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        xs = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((xs - center + 0.5) / support))
        w /= w.sum()
        dst[i] = np.tensordot(w, moved[lo:hi], axes=(0, 0))
    # PIL rounds half up (its fixed-point sum starts at one half).
    return np.clip(np.floor(out + 0.5), 0, 255)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return bilinear_1d(bilinear_1d(image, width, 1), height, 0).astype(np.uint8)


def process_image(image: np.ndarray, pre: dict) -> dict:
    """image uint8 [H, W, 3] -> pixel_values [1, 1, max_tiles, 3, T, T], aspect_ratio_ids [1, 1], aspect_ratio_mask
    [1, 1, max_tiles] and num_tiles, as MllamaImageProcessor.preprocess makes them for one image."""
    tile = pre["size"]["height"]
    max_tiles = pre["max_image_tiles"]
    h, w = image.shape[:2]
    canvas_h, canvas_w = optimal_canvas(h, w, max_tiles, tile)
    rows, cols = canvas_h // tile, canvas_w // tile
    new_h, new_w = fit_to_canvas(h, w, canvas_h, canvas_w, tile)
    resized = resize(image, new_h, new_w)
    padded = np.zeros((rows * tile, cols * tile, 3), dtype=np.float64)
    padded[:new_h, :new_w] = resized
    x = padded * pre["rescale_factor"]
    x = (x - np.array(pre["image_mean"])) / np.array(pre["image_std"])
    x = x.transpose(2, 0, 1).astype(np.float32)
    tiles = x.reshape(3, rows, tile, cols, tile).transpose(1, 3, 0, 2, 4).reshape(rows * cols, 3, tile, tile)
    pixel_values = np.zeros((1, 1, max_tiles, 3, tile, tile), dtype=np.float32)
    pixel_values[0, 0, : rows * cols] = tiles
    mask = np.zeros((1, 1, max_tiles), dtype=np.int64)
    mask[0, 0, : rows * cols] = 1
    ratio_id = supported_aspect_ratios(max_tiles).index((rows, cols)) + 1
    return {
        "pixel_values": pixel_values,
        "aspect_ratio_ids": np.array([[ratio_id]], dtype=np.int64),
        "aspect_ratio_mask": mask,
        "num_tiles": rows * cols,
        "resized": [new_h, new_w],
    }


def cross_attention_mask(input_ids: list[int], image_token_id: int, num_tiles: int, max_tiles: int) -> np.ndarray:
    """[1, T, 1, max_tiles]: from the (one) image token to the end, the image's real tiles."""
    mask = np.zeros((1, len(input_ids), 1, max_tiles), dtype=np.int64)
    at = [i for i, t in enumerate(input_ids) if t == image_token_id]
    if at:
        mask[0, at[0] :, 0, :num_tiles] = 1
    return mask
