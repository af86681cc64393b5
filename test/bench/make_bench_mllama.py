"""A random-weight Llama-3.2-Vision (mllama) model folder at a real model's shape, for `npm run bench:engine`.

    npm run bench:model -- --family mllama [--out .work/bench-mllama] [--seed 0] [--text-layers 10]
        [--vision-layers 2] [--global-layers 1] [--image-size 224]

Text model: Llama-3.2-1B's widths (hidden 2048, 32 heads sharing 8 key/value heads of 64, SwiGLU MLP of 8192,
vocabulary 128256, so the LM head costs what it costs there, RoPE with llama3 scaling) with a cross-attention layer
every fifth (3, 8, … as in the 11B model); 10 layers by default (Llama-3.2-1B has 16). Vision tower: the real
model's width (1280, 16 heads, MLP 5120, gated global layers, intermediate states kept) with 2 + 1 layers instead of
32 + 8 and 224-px tiles instead of 560 (257 tokens a tile instead of 1601), up to 4 tiles, so one image costs
seconds, not minutes, on a shared 2-core CPU. Each reduction is an option.

The folder comes from the exporter (models/export) with the conformance fixture's chat template and processor files,
and a Llama-3-style tokenizer (byte-level BPE, Llama-3's split regex, the special tokens after the BPE vocabulary)
whose `--merges` merges (32000) are learned here on general English text found offline on the machine: the license
texts of /usr/share/common-licenses and the packages' READMEs and text files under /usr/share/doc, up to
`--corpus-bytes`, never the project's own prompts. It spells English about four characters a token, as a real
Llama vocabulary does, so prompts are as long in tokens as a real model's; the engine samples its ids (about 32,000)
of the 128256 logits.

`--weights-from DIR` takes the ONNX files of an earlier folder of the same shape (hard links) instead of exporting
again, when only the tokenizer is new: the weights do not depend on it (every id stays below 128256).
"""

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models" / "export"))
sys.path.insert(0, str(REPO / "test" / "conformance"))

from fixturegen.mllama import ASPECT_RATIOS, SPECIALS, randomize, tokenizer, write_files  # noqa: E402
from fixturegen.tokenizers import llama3_tokenizer, token_id  # noqa: E402
from stagebeam_export.export_mllama import write_folder, write_metadata  # noqa: E402
from stagebeam_export.mllama import Mllama  # noqa: E402


def english_text(limit: int) -> tuple[str, int]:
    """General English text found offline: /usr/share/common-licenses, then the READMEs and text files under
    /usr/share/doc (gzipped ones too), in path order, each distinct file once, until `limit` bytes."""
    files = sorted(Path("/usr/share/common-licenses").glob("*"))
    found: set[Path] = set()
    for pattern in ("README*", "*.txt", "*.md", "*.rst", "*.txt.gz", "*.md.gz", "*.rst.gz"):
        found.update(Path("/usr/share/doc").rglob(pattern))
    files += sorted(found)
    seen: set[bytes] = set()
    parts: list[str] = []
    size = 0
    for f in files:
        if size >= limit:
            break
        if not f.is_file():
            continue
        raw = f.read_bytes()
        if f.suffix == ".gz":
            raw = gzip.decompress(raw)
        digest = hashlib.sha256(raw).digest()
        if digest in seen:
            continue
        try:
            parts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        seen.add(digest)
        size += len(raw)
    if size < 1_000_000:
        raise SystemExit(f"found {size:,} bytes of English text under /usr/share/common-licenses and /usr/share/doc; "
                         "expected at least 1,000,000 to learn the bench tokenizer from (install a few documented packages)")
    return "\n".join(parts), len(parts)


SHAPE_KEYS = ("image_token_index", "bos_token_id", "eos_token_id")


def shape(cfg: dict) -> dict:
    """config.json without the token ids: what the weights depend on."""
    text = {k: v for k, v in cfg["text_config"].items() if k not in SHAPE_KEYS}
    return {"text_config": text, "vision_config": cfg["vision_config"]}


def link_weights(source: Path, out: Path, cfg: dict) -> None:
    """The ONNX files of `source`, a folder this script wrote with the same shape, hard-linked into `out`."""
    theirs = json.loads((source / "config.json").read_text())
    if shape(theirs) != shape(cfg):
        raise SystemExit(f"--weights-from {source}: its config.json has another shape than this run's; expected the same options")
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    for f in sorted((source / "onnx").iterdir()):
        target = out / "onnx" / f.name
        target.unlink(missing_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copyfile(f, target)


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
    ap.add_argument("--merges", type=int, default=32000)
    ap.add_argument("--corpus-bytes", type=int, default=16_000_000)
    ap.add_argument("--weights-from", type=Path, default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # torch.onnx's tracer warnings: the shapes it freezes are config.json's
    started = time.time()
    text, files_read = english_text(args.corpus_bytes)
    tok = tokenizer(llama3_tokenizer(text, args.merges, SPECIALS))
    print(f"tokenizer: {len(tok['model']['merges'])} merges learned on {len(text.encode()):,} bytes of English "
          f"({files_read} files), {len(tok['model']['vocab']) + len(SPECIALS)} ids, {time.time() - started:.0f} s")
    cfg = config(args, tok)
    with tempfile.TemporaryDirectory() as files:
        write_files(Path(files), cfg, tok, tile=args.image_size)
        if args.weights_from is not None:
            link_weights(args.weights_from, args.out, cfg)
            write_metadata(cfg, Path(files), args.out, ["fp32"])
            params = f"the weights of {args.weights_from}"
        else:
            model = Mllama(cfg).eval()
            randomize(model, args.seed)
            write_folder(model, cfg, Path(files), args.out, ["fp32"])
            vision = sum(p.numel() for p in model.vision_model.parameters())
            params = f"{sum(p.numel() for p in model.parameters()) - vision:,} text + {vision:,} vision parameters"
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out}: {params}, cross-attention layers "
          f"{cfg['text_config']['cross_attention_layers']} of {args.text_layers}, {size / 1e9:.1f} GB, {time.time() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
