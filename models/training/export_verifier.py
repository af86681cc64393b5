"""Export the process verifier to models/stagebeam-tiny-prm (the engine's model folder layout).

    python3 models/training/export_verifier.py [--checkpoint models/.work/verifier-checkpoint.pt]
                                               [--data models/.work/verifier-data] [--out models/stagebeam-tiny-prm]

The graphs, config.json, generation_config.json and preprocessor_config.json are written by
export.py's code, so the folder loads exactly as the policy's does; tokenizer.json,
tokenizer_config.json and verifier.json come from the TypeScript side (build-verifier-data.ts).
The export is checked in onnxruntime-node as the policy's is (KV-cache steps, left padding,
batched images), on a held-out verifier sequence whose last position is a step marker, and the
top-5 logits there (the good and bad tokens among them) must match PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import ROOT, load_images, load_lines, load_meta, pixel_values_np  # noqa: E402
from export import export_onnx, verify_with_node, write_configs  # noqa: E402
from model import count_params, load_checkpoint  # noqa: E402
from train_verifier import DEFAULT_CHECKPOINT, DEFAULT_VERIFIER_DATA  # noqa: E402

SIZE_LIMIT = 15e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--data", default=DEFAULT_VERIFIER_DATA)
    ap.add_argument("--out", default=os.path.join(ROOT, "stagebeam-tiny-prm"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    meta = load_meta(args.data)
    model, _ = load_checkpoint(args.checkpoint)
    if model.cfg.vocab_size != int(meta["vocab_size"]):
        raise SystemExit(f"checkpoint vocab {model.cfg.vocab_size} != verifier data vocab {meta['vocab_size']}")
    for name in ("tokenizer.json", "tokenizer_config.json", "verifier.json"):
        if not os.path.isfile(os.path.join(args.out, name)):
            raise SystemExit(f"{args.out}/{name} missing: run npm run verifier:data first")
    export_onnx(model, args.out)
    write_configs(model, meta, args.out)
    # a verifier has no judge prompts: config.json carries only what the engine reads
    path = os.path.join(args.out, "config.json")
    with open(path) as f:
        config = {k: v for k, v in json.load(f).items() if v is not None}
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    line = load_lines(args.data, "heldout")[0]
    pv_np = pixel_values_np(load_images(args.data, "heldout", meta)[line["image"]: line["image"] + 1], meta)
    ids = [int(i) for i in line["ids"]]
    with torch.no_grad():
        x = torch.tensor([ids])
        logits, _ = model(x, torch.from_numpy(pv_np), torch.ones_like(x), torch.arange(len(ids)).unsqueeze(0))
        vals, idx = logits[0, -1].topk(5)
    golden = {"ids": ids, "top5_ids": [int(i) for i in idx], "top5_logits": [float(v) for v in vals]}
    sizes = {n: os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out)
             if os.path.isfile(os.path.join(args.out, n))}
    total = sum(sizes.values())
    print(f"exported to {args.out}: params {count_params(model):,}, {total / 1e6:.2f} MB")
    if total > SIZE_LIMIT:
        raise SystemExit(f"the verifier folder is {total / 1e6:.2f} MB; the limit is {SIZE_LIMIT / 1e6:.0f} MB")
    r = verify_with_node(args.out, golden, pv_np)
    print("onnxruntime-node verification ok:", json.dumps(r))


if __name__ == "__main__":
    main()
