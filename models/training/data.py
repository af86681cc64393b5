"""Loading the data folder written by the TypeScript builder (see DATA_FORMAT.md)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CandidateWords:
    """The token ids the dense judge and grounding targets look for, read once from meta.json."""
    clause_ends: frozenset  # punctuation, "and" and the closing stage tags
    sizes: dict  # token id -> index into meta["cell_attributes"]["sizes"]
    colors: dict
    shapes: dict
    image_token_id: int


def candidate_words(meta: dict) -> CandidateWords:
    index = {t: i for i, t in enumerate(meta["vocab"])}
    words = {".", ",", "?", "\u2581and"}
    tags = {i for t, i in meta.get("stage_tag_ids", {}).items() if t.startswith("</")}
    attrs = meta["cell_attributes"]
    sizes, colors, shapes = ({index["\u2581" + w]: i for i, w in enumerate(attrs[k])}
                             for k in ("sizes", "colors", "shapes"))
    return CandidateWords(frozenset({index[w] for w in words if w in index} | tags), sizes, colors, shapes,
                          int(meta["image_token_id"]))


def clause_flags(x, cands, wrong, clause_ends) -> dict:
    """Targets of the judge token head in a compare line: {position: 1 if the clause ending
    there holds the wrong candidate's first mistake, else 0}, at clause ends only.

    The mark is the first clause end at or after the first differing token, not the differing
    tokens themselves: in "a large yellow triangle" the size word comes before the object it
    describes, so whether it is wrong is only knowable once the phrase is complete. Later clause
    ends inside the differing run carry no label: they may repeat the mistake or be right."""
    flags = {p: 0 for s, e in cands for p in range(s, e) if x[p] in clause_ends}
    start, end = wrong
    cand_end = next(e for s, e in cands if s <= start < e)
    mark = next((p for p in range(start, cand_end) if x[p] in clause_ends), cand_end - 1)
    for p in range(mark + 1, end):
        flags.pop(p, None)
    flags[mark] = 1
    return flags


def named_objects(x, token_cells, words: CandidateWords) -> list:
    """Every object a line names as "<size> <colour> <shape>" after the image: (position of the
    shape word, positions of the image tokens holding that kind of object, empty when the image
    has none: a wrong candidate's or a question's). `token_cells` are the image's cell labels in
    image-token order."""
    image_positions = [p for p, t in enumerate(x) if t == words.image_token_id]
    holding = {}
    for k, label in enumerate(token_cells):
        if label:
            holding.setdefault(int(label), []).append(image_positions[k])
    out = []
    for t in range(image_positions[-1] + 3, len(x)):
        if x[t] in words.shapes and x[t - 1] in words.colors and x[t - 2] in words.sizes:
            kind = (words.sizes[x[t - 2]] * len(words.colors) + words.colors[x[t - 1]]) * len(words.shapes)
            out.append((t, holding.get(1 + kind + words.shapes[x[t]], [])))
    return out


def caption_mistake(x, cands, label: str, token_cells, words: CandidateWords) -> str:
    """What the wrong candidate of a CAPTION compare line gets wrong: "absent object" when it
    names an object the image does not hold (a presence check finds it), else "fewer objects"
    or "more objects" named than the right candidate (only counting finds it), else "other"."""
    named = named_objects(x, token_cells, words)
    good, bad = (cands[0], cands[1]) if label == "1" else (cands[1], cands[0])
    in_bad = [held for t, held in named if bad[0] <= t < bad[1]]
    n_good = sum(1 for t, _ in named if good[0] <= t < good[1])
    if any(not held for held in in_bad):
        return "absent object"
    if len(in_bad) != n_good:
        return "fewer objects" if len(in_bad) < n_good else "more objects"
    return "other"
