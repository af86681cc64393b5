"""A random-weight Llama-3.2-Vision (mllama) model folder at a real model's shape, for `npm run bench:engine`.

    npm run bench:model -- --family mllama [--out .work/bench-mllama] [--seed 0] [--text-layers 10]
        [--vision-layers 2] [--global-layers 1] [--image-size 224]

Text model: Llama-3.2-1B's widths (hidden 2048, 32 heads sharing 8 key/value heads of 64, SwiGLU MLP of 8192,
vocabulary 128256, so the LM head costs what it costs there, RoPE with llama3 scaling) with a cross-attention layer
every fifth (3, 8, … as in the 11B model); 10 layers by default (Llama-3.2-1B has 16). Vision tower: the real
model's width (1280, 16 heads, MLP 5120, gated global layers, intermediate states kept) with 2 + 1 layers instead of
32 + 8 and 224-px tiles instead of 560 (257 tokens a tile instead of 1601), up to 4 tiles, so one image costs
seconds, not minutes, on a shared 2-core CPU. Each reduction is an option.

The folder comes from the exporter (models/export) with the conformance fixture's tokenizer and chat template (its
few hundred ids are what gets sampled from the 128256 logits; `<|image|>` is one of them).
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models" / "export"))
sys.path.insert(0, str(REPO / "test" / "conformance"))

from fixturegen.mllama import ASPECT_RATIOS, randomize, tokenizer, write_files  # noqa: E402
from fixturegen.tokenizers import token_id  # noqa: E402
from stagebeam_export.export_mllama import write_folder  # noqa: E402
from stagebeam_export.mllama import Mllama  # noqa: E402


def config(args, tok: dict) -> dict:
    layers = args.text_layers
    cross = list(range(3, layers, 5))
    kept = [1, args.vision_layers - 1] if args.vision_layers > 1 else [0]
    return {
        "architectures": ["MllamaForConditionalGeneration"],
        "model_type": "mllama",
        "image_token_index": token_id(tok, "<|image|>"),
        "text_config": {
            "model_type": "mllama_text_model",
            "vocab_size": 128256,
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": layers,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "cross_attention_layers": cross,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192},
            "max_position_embeddings": 131072,
            "bos_token_id": token_id(tok, "<|begin_of_text|>"),
            "eos_token_id": [token_id(tok, t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")],
            "tie_word_embeddings": False,
        },
        "vision_config": {
            "model_type": "mllama_vision_model",
            "hidden_size": 1280,
            "attention_heads": 16,
            "intermediate_size": 5120,
            "num_hidden_layers": args.vision_layers,
            "num_global_layers": args.global_layers,
            "intermediate_layers_indices": kept,
            "vision_output_dim": 1280 * (1 + len(kept)),
            "image_size": args.image_size,
            "patch_size": 14,
            "max_num_tiles": 4,
            "supported_aspect_ratios": ASPECT_RATIOS,
            "norm_eps": 1e-5,
            "num_channels": 3,
        },
    }


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / ".work" / "bench-mllama")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-layers", type=int, default=10)
    ap.add_argument("--vision-layers", type=int, default=2)
    ap.add_argument("--global-layers", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=224)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # torch.onnx's tracer warnings: the shapes it freezes are config.json's
    started = time.time()
    tok = tokenizer()
    cfg = config(args, tok)
    model = Mllama(cfg).eval()
    randomize(model, args.seed)
    with tempfile.TemporaryDirectory() as files:
        write_files(Path(files), cfg, tok, tile=args.image_size)
        write_folder(model, cfg, Path(files), args.out, ["fp32"])
    vision = sum(p.numel() for p in model.vision_model.parameters())
    total = sum(p.numel() for p in model.parameters())
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out}: {total - vision:,} text + {vision:,} vision parameters, cross-attention layers "
          f"{cfg['text_config']['cross_attention_layers']} of {args.text_layers}, {size / 1e9:.1f} GB, {time.time() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
