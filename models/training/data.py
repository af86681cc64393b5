"""Loading the data folder written by the TypeScript builder (see DATA_FORMAT.md)."""

from __future__ import annotations

import json
import os
from typing import List

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # models/
DEFAULT_DATA = os.path.join(ROOT, ".work", "data")
DEFAULT_WORK = os.path.join(ROOT, ".work")


def load_meta(data_dir: str) -> dict:
    with open(os.path.join(data_dir, "meta.json")) as f:
        return json.load(f)


def load_images(data_dir: str, split: str, meta: dict) -> np.ndarray:
    s = int(meta.get("image_size", 128))
    path = os.path.join(data_dir, f"{split}_images.u8")
    n = os.path.getsize(path) // (s * s * 3)
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(n, s, s, 3))


def load_cells(data_dir: str, split: str, meta: dict) -> np.ndarray:
    """[N, grid*grid] uint8 cell labels (see DATA_FORMAT.md)."""
    g = int(meta["grid"])
    return np.fromfile(os.path.join(data_dir, f"{split}_cells.u8"), dtype=np.uint8).reshape(-1, g * g)


def load_lines(data_dir: str, split: str) -> List[dict]:
    out = []
    with open(os.path.join(data_dir, f"{split}.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def pixel_values_np(images_u8: np.ndarray, meta: dict) -> np.ndarray:
    """[N,H,W,3] uint8 -> [N,3,H,W] float32, (x/255 - mean)/std.

    Computed in float64 and rounded once to float32 (what a JS implementation computing in
    doubles and storing into a Float32Array gets)."""
    x = np.asarray(images_u8, dtype=np.float64) / 255.0
    mean = np.asarray(meta.get("image_mean", [0.5] * 3), dtype=np.float64)
    std = np.asarray(meta.get("image_std", [0.5] * 3), dtype=np.float64)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).astype(np.float32))


def pixel_values(images_u8: np.ndarray, idx, meta: dict) -> torch.Tensor:
    return torch.from_numpy(pixel_values_np(images_u8[idx], meta))
