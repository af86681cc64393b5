"""Write a random-weight benchmark model folder at a real model's shape.

    /usr/bin/python3 test/bench/make-bench-model.py [--out .work/bench-model] [--seed 0]
        [--image-tokens 320] [--vision cheap|siglip] [--weights float32|float16] [--kv float32|float16]

The text model has SmolVLM-256M's dimensions (30 decoder layers, width 576, 9 attention heads
sharing 3 key/value heads, head_dim 64, SwiGLU MLP of 1536, vocabulary padded to 49152, so the
LM head costs what it costs there); the vision encoder turns a k×k tile split plus the whole
image (a global tile) into 64 tokens a tile: 320 image tokens for a 2×2 split. `--vision cheap`
makes each tile one patch projection (the encoder costs nothing, so the decoder is measured);
`--vision siglip` is SmolVLM's SigLIP-B/16 at 512 px (12 layers, width 768, pixel shuffle 4),
a second or more of CPU per tile.

The folder is in the bundled model's layout and ONNX contract (models/training/export.py
writes the three sessions and the JSON files; tokenizer.json, tokenizer_config.json and
judge_templates.json are copied from models/stagebeam-tiny), so the engine loads it as it loads
the bundled model and samples only the tokenizer's 174 ids of the 49152 logits.

Its text is noise, so generation lengths are fixed by the weights: the LM head rows of the
end-of-sequence token and the four stage end tags point against a constant the final
LayerNorm adds to every hidden state (its bias, along the all-ones direction that the
normalised part never has), so their logits are -100 whatever the input and they are never
sampled. Every candidate then runs to its token cap and a stage search walks all four stages.

`--weights float16` stores the weights in half precision behind Cast nodes (half the file;
ONNX Runtime folds them back to float32 when it loads); `--kv float16` makes past/present
float16 at the decoder's boundary (the engine then keeps its KV caches in half precision).
Same seed, same options: the same weights.

`--family mllama` (first) writes a Llama-3.2-Vision folder instead: see make_bench_mllama.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUNDLED = os.path.join(REPO, "models", "stagebeam-tiny")
sys.path.insert(0, os.path.join(REPO, "models", "training"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from export import export_onnx, write_configs  # noqa: E402
from model import EncoderLayer, ModelConfig, StagebeamTiny, count_params  # noqa: E402

TOKENS_PER_TILE = 64  # an 8×8 grid after the pixel shuffle
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "judge_templates.json")
NEVER_LOGIT = -100.0

# per-tile encoders: tile side, patch side, width, layers, heads, MLP width, pixel shuffle factor
VISION = {
    "cheap": dict(tile=64, patch=8, width=64, layers=0, heads=1, inter=64, shuffle=1),
    "siglip": dict(tile=512, patch=16, width=768, layers=12, heads=12, inter=3072, shuffle=4),
}


@dataclass
class BenchConfig(ModelConfig):
    image_tokens: int = 320

    @property
    def image_seq_length(self) -> int:
        return self.image_tokens


def tiles_per_side(image_tokens: int) -> int:
    """64 tokens: the whole image only; 64·(k²+1): a k×k split plus the whole image."""
    if image_tokens == TOKENS_PER_TILE:
        return 1
    for k in range(2, 9):
        if image_tokens == TOKENS_PER_TILE * (k * k + 1):
            return k
    raise SystemExit(f"--image-tokens {image_tokens}: expected 64 or 64·(k²+1) for k = 2…8 (320, 640, 1088, …)")


class TiledVision(nn.Module):
    """pixel_values [B,3,k·tile,k·tile] -> image_features [B,(k²+1)·64,D] (k = 1: [B,64,D]).

    The k×k tiles row by row, then the whole image average-pooled to one tile; each tile is
    cut into patches, run through `layers` ViT encoder layers, pixel-shuffled to an 8×8 grid
    and projected to the decoder width, as SmolVLM does."""

    def __init__(self, k: int, out_dim: int, tile: int, patch: int, width: int, layers: int, heads: int, inter: int,
                 shuffle: int):
        super().__init__()
        grid = tile // patch
        if grid != 8 * shuffle:
            raise ValueError(f"tile {tile} / patch {patch} must be 8 × shuffle {shuffle}")
        self.k, self.tile, self.shuffle, self.grid = k, tile, shuffle, grid
        self.patch = nn.Conv2d(3, width, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, grid * grid, width) * 0.02)
        self.layers = nn.ModuleList([EncoderLayer(width, heads, inter) for _ in range(layers)])
        self.ln = nn.LayerNorm(width)
        self.proj = nn.Linear(width * shuffle * shuffle, out_dim)

    def tiles(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 1:
            return x
        B, k, t = x.shape[0], self.k, self.tile
        split = x.reshape(B, 3, k, t, k, t).permute(0, 2, 4, 1, 3, 5).reshape(B, k * k, 3, t, t)
        whole = F.avg_pool2d(x, k).unsqueeze(1)
        return torch.cat([split, whole], dim=1).reshape(-1, 3, t, t)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B = pixel_values.shape[0]
        x = self.patch(self.tiles(pixel_values)).flatten(2).transpose(1, 2) + self.pos  # [B·n, grid², width]
        for layer in self.layers:
            x = layer(x)
        x = self.ln(x)
        n, s, g, w = x.shape[0], self.shuffle, self.grid // self.shuffle, x.shape[2]
        x = x.reshape(n, g, s, g, s, w).permute(0, 1, 3, 2, 4, 5).reshape(n, g * g, s * s * w)
        return self.proj(x).reshape(B, -1, self.proj.out_features)


def never_sample(model: StagebeamTiny, ids: list) -> None:
    """Makes the logits of `ids` NEVER_LOGIT for every input, leaving the other logits as they were."""
    dec = model.decoder
    d = dec.ln_f.normalized_shape[0]
    with torch.no_grad():
        dec.ln_f.weight.fill_(1.0)
        dec.ln_f.bias.fill_(1.0)
        w = dec.lm_head.weight
        w -= w.mean(dim=1, keepdim=True)
        w[ids] = NEVER_LOGIT / d


def bench_model(args, bundled: dict) -> StagebeamTiny:
    cfg = BenchConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate,
        mlp="swiglu",
        max_position_embeddings=args.context,
        image_token_id=bundled["image_token_id"],
        bos_token_id=bundled["bos_token_id"],
        eos_token_id=bundled["eos_token_id"],
        pad_token_id=bundled["pad_token_id"],
        image_tokens=args.image_tokens,
        # the bundled model's vision tower is built and then replaced; keep it small
        vision_hidden_size=32, vision_layers=0, vision_intermediate_size=32, vision_heads=1, stem_channels=(4, 4, 4),
    )
    k = tiles_per_side(args.image_tokens)
    v = VISION[args.vision]
    cfg.image_size = k * v["tile"]
    model = StagebeamTiny(cfg)
    model.vision = TiledVision(k, cfg.hidden_size, **v)
    stops = [cfg.eos_token_id] + [i for tag, i in bundled["stage_tag_ids"].items() if tag.startswith("</")]
    never_sample(model, stops)
    return model.eval()


def prepend(graph, nodes: list) -> None:
    """Puts `nodes` first, keeping the graph in topological order."""
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)


def stored_in_half(path: str, min_elements: int = 1024) -> None:
    """Float32 initializers of at least `min_elements` become float16 ones behind a Cast node."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(path)
    casts = []
    for init in m.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
        init.CopyFrom(half)
    prepend(m.graph, casts)
    onnx.save(m, path)


def half_kv(path: str) -> None:
    """past_key_values.* inputs and present.* outputs become float16, cast at the graph's edge."""
    import onnx
    from onnx import helper

    m = onnx.load(path)
    g = m.graph
    to_float, to_half, renames = [], [], {}
    for inp in g.input:
        if inp.name.startswith("past_key_values."):
            inp.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
            renames[inp.name] = inp.name + "_f32"
            to_float.append(helper.make_node("Cast", [inp.name], [inp.name + "_f32"], to=onnx.TensorProto.FLOAT))
    outs = {o.name: o for o in g.output if o.name.startswith("present.")}
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
            elif name in outs:
                node.input[i] = name + "_f32"
        for i, name in enumerate(node.output):
            if name in outs:
                node.output[i] = name + "_f32"
    for name, o in outs.items():
        o.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
        to_half.append(helper.make_node("Cast", [name + "_f32"], [name], to=onnx.TensorProto.FLOAT16))
    prepend(g, to_float)
    g.node.extend(to_half)
    onnx.checker.check_model(m)
    onnx.save(m, path)


def describe(config_path: str, args, model: StagebeamTiny) -> None:
    with open(config_path) as f:
        config = json.load(f)
    config["vision_config"] = {"encoder": f"bench-{args.vision}", **VISION[args.vision],
                               "tiles_per_side": tiles_per_side(args.image_tokens),
                               "image_size": model.cfg.image_size, "image_seq_length": args.image_tokens}
    config["mlp"] = "swiglu"
    config["torch_dtype"] = args.weights
    config["bench_model"] = (f"random weights (seed {args.seed}) from test/bench/make-bench-model.py; "
                             "never samples end of sequence or a stage end tag")
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, ".work", "bench-model"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=576)
    ap.add_argument("--heads", type=int, default=9)
    ap.add_argument("--kv-heads", type=int, default=3)
    ap.add_argument("--intermediate", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--context", type=int, default=8192)
    ap.add_argument("--image-tokens", type=int, default=320)
    ap.add_argument("--vision", choices=sorted(VISION), default="cheap")
    ap.add_argument("--weights", choices=["float32", "float16"], default="float32")
    ap.add_argument("--kv", choices=["float32", "float16"], default="float32")
    args = ap.parse_args()
    started = time.time()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    with open(os.path.join(BUNDLED, "config.json")) as f:
        bundled = json.load(f)
    with open(os.path.join(BUNDLED, "preprocessor_config.json")) as f:
        pre = json.load(f)
    model = bench_model(args, bundled)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    export_onnx(model, args.out)
    meta = {k: bundled[k] for k in ("stage_tag_ids", "judge_choice_ids", "check_ids")}
    meta.update(image_mean=pre["image_mean"], image_std=pre["image_std"])
    write_configs(model, meta, args.out)
    describe(os.path.join(args.out, "config.json"), args, model)
    for name in COPIED_FILES:
        shutil.copy(os.path.join(BUNDLED, name), os.path.join(args.out, name))
    if args.kv == "float16":
        half_kv(os.path.join(args.out, "decoder_model_merged.onnx"))
    if args.weights == "float16":
        for name in ("vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx"):
            stored_in_half(os.path.join(args.out, name))
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    vision = count_params(model.vision)
    print(f"wrote {args.out}: {count_params(model) - vision:,} text + {vision:,} vision parameters, "
          f"{args.image_tokens} image tokens, {total / 1e6:.0f} MB, {time.time() - started:.0f} s")


if __name__ == "__main__":
    # `--family mllama` writes a Llama-3.2-Vision folder instead (make_bench_mllama.py, its own options).
    if sys.argv[1:3] == ["--family", "mllama"]:
        sys.path.insert(0, HERE)
        import make_bench_mllama  # noqa: E402

        make_bench_mllama.main(sys.argv[3:])
    else:
        main()
