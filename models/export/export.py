#!/usr/bin/env python3
"""Export a Hugging Face checkpoint folder to the ONNX model folder stagebeam's engine loads.

usage: export.py CHECKPOINT_DIR --out DIR [--dtype fp32|fp16|all]

Families: mllama (Llama-3.2-Vision and its fine-tunes, e.g. LLaVA-CoT's Xkev/Llama-3.2V-11B-cot).
Needs PyTorch and onnx; not Hugging Face transformers. See README.md for the folder contract."""

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stagebeam_export.checkpoint import CheckpointError  # noqa: E402
from stagebeam_export.export_mllama import export  # noqa: E402
from stagebeam_export.safetensors import SafetensorsError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dtype", choices=["fp32", "fp16", "all"], default="fp32")
    args = parser.parse_args()
    dtypes = ["fp32", "fp16"] if args.dtype == "all" else [args.dtype]
    # torch.onnx's tracer warnings are about Python values it freezes: here the fixed shapes of config.json.
    warnings.simplefilter("ignore")
    try:
        export(args.checkpoint, args.out, dtypes)
    except (CheckpointError, SafetensorsError, ValueError, FileNotFoundError) as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
