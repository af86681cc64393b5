#!/usr/bin/env python3
"""Write tiny random-weight VLM folders in the layout onnx-community publishes, deterministic from a seed.

usage: make_fixtures.py OUT_DIR [--family llava|idefics3|qwen2_vl|qwen2_5_vl|mllama|all] [--seed N]
Each family lands in OUT_DIR/<family>/ ("all" is the four transformers.js reads; mllama also writes
OUT_DIR/mllama-checkpoint/ and OUT_DIR/mllama-images/). See FIXTURES.md for the contracts the files follow."""

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixturegen import idefics3, llava, mllama, qwen2_5_vl, qwen2_vl  # noqa: E402

FAMILIES = {
    "llava": llava.build,
    "idefics3": idefics3.build,
    "qwen2_vl": qwen2_vl.build,
    "qwen2_5_vl": qwen2_5_vl.build,
}
# Not in "all": it runs the exporter (models/export) on a checkpoint it writes, and only its own tests need it.
EXPORTED = {"mllama": mllama.build}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--family", choices=[*FAMILIES, *EXPORTED, "all"], default="all")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in FAMILIES if args.family == "all" else [args.family]:
        target = args.out_dir / name
        shutil.rmtree(target, ignore_errors=True)
        {**FAMILIES, **EXPORTED}[name](target, args.seed)
        print(f"{name}: {target}")


if __name__ == "__main__":
    main()
