#!/usr/bin/env python3
"""Greedy tokens of an mllama checkpoint from the exporter's own PyTorch definition, with no KV cache (every step
reruns the whole sequence): what an exported folder's graphs must reproduce.

usage: reference.py CHECKPOINT_DIR < requests.json
requests: a list of {"input_ids": [...], "pixel_values": [...flat...], "aspect_ratio_ids": [id], "aspect_ratio_mask": [...],
          "num_tiles": n, "steps": k}
prints:  one list of tokens per request, as JSON (an eos token ends a list and is included)"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stagebeam_export.export_mllama import load_model  # noqa: E402


def greedy(model, config: dict, req: dict) -> list[int]:
    v = model.vis
    image_id = config["image_token_index"]
    eos = set(config["text_config"]["eos_token_id"])
    pixels = torch.tensor(req["pixel_values"], dtype=torch.float32).reshape(1, v.max_tiles, v.channels, v.image_size, v.image_size)
    ratio_ids = torch.tensor(req["aspect_ratio_ids"])
    ratio_mask = torch.tensor([req["aspect_ratio_mask"]])
    ids = list(req["input_ids"])
    first = ids.index(image_id)
    tokens = []
    for _ in range(req["steps"]):
        mask = torch.zeros(1, len(ids), v.max_tiles, dtype=torch.long)
        mask[0, first:, : req["num_tiles"]] = 1
        logits = model.forward_reference(torch.tensor([ids]), pixels, ratio_ids, ratio_mask, mask)
        token = int(logits[0, -1].argmax())
        tokens.append(token)
        if token in eos:
            break
        ids.append(token)
    return tokens


def main() -> None:
    model, ckpt = load_model(Path(sys.argv[1]))
    print(json.dumps([greedy(model, ckpt.config, req) for req in json.load(sys.stdin)]))


if __name__ == "__main__":
    main()
