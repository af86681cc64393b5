"""Llama-3.2-Vision (mllama): a tiny random-weight checkpoint in Hugging Face's layout (config.json, two bf16
safetensors shards + model.safetensors.index.json, tokenizer and processor files), the engine's folder made from it
by the exporter (models/export), and the processor reference for a few synthetic images (mllama_processor.py).

Writes OUT/mllama-checkpoint/, OUT/mllama/ (onnx/… fp32 and _fp16), OUT/mllama-images/<name>.png and
OUT/mllama-images/reference.json."""

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

from . import mllama_processor
from .common import CLIP_MEAN, CLIP_STD, RESCALE, write_json
from .tokenizers import qwen2_tokenizer, token_id, vocab_size

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "models" / "export"))

from stagebeam_export import safetensors  # noqa: E402
from stagebeam_export.export_mllama import export  # noqa: E402
from stagebeam_export.mllama import Mllama  # noqa: E402

SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
    "<|image|>",
]

# Llama 3.2 Vision's template, cut to what a user turn with an image and text needs.
CHAT_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- else %}"
    "{%- for content in message['content'] %}{%- if content['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

TILE = 32
MAX_TILES = 4
ASPECT_RATIOS = [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]

# name -> (height, width): 1 to 4 tiles with no resize (compared exactly), then two that are resized.
IMAGES = {"one": (32, 32), "two-padded": (32, 40), "three-tall": (96, 32), "four": (64, 64), "wide": (120, 200), "small": (20, 24)}


def tokenizer(bpe: dict | None = None) -> dict:
    """The fixture's tokenizer: `bpe` (default: the small Qwen2-style one), built with SPECIALS after its vocabulary,
    with Llama's <|begin_of_text|> put in front of every encoded text."""
    tok = bpe if bpe is not None else qwen2_tokenizer(SPECIALS)
    bos = token_id(tok, "<|begin_of_text|>")
    tok["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos], "tokens": ["<|begin_of_text|>"]}},
    }
    return tok


def config(tok: dict) -> dict:
    image = token_id(tok, "<|image|>")
    # As in the published model, <|image|> is the first id past the language model's vocabulary (embedded, never predicted).
    assert image == vocab_size(tok) - 1
    eos = [token_id(tok, t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    return {
        "architectures": ["MllamaForConditionalGeneration"],
        "model_type": "mllama",
        "image_token_index": image,
        "torch_dtype": "bfloat16",
        "text_config": {
            "model_type": "mllama_text_model",
            "vocab_size": image,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 5,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "cross_attention_layers": [1, 3],
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            "max_position_embeddings": 2048,
            "hidden_act": "silu",
            "bos_token_id": token_id(tok, "<|begin_of_text|>"),
            "eos_token_id": eos,
            "pad_token_id": token_id(tok, "<|finetune_right_pad_id|>"),
            "tie_word_embeddings": False,
        },
        "vision_config": {
            "model_type": "mllama_vision_model",
            "hidden_size": 32,
            "attention_heads": 4,
            "intermediate_size": 64,
            "num_hidden_layers": 4,
            "num_global_layers": 2,
            "intermediate_layers_indices": [1, 3],
            "vision_output_dim": 96,
            "image_size": TILE,
            "patch_size": 8,
            "max_num_tiles": MAX_TILES,
            "supported_aspect_ratios": ASPECT_RATIOS,
            "norm_eps": 1e-5,
            "num_channels": 3,
            "hidden_act": "gelu",
        },
    }


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights loud enough that every path matters: gates open, embeddings and norms off their init values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gate" in name and p.numel() == 1:
                p.copy_(0.4 + 0.6 * torch.rand(1, generator=g))
            elif name.endswith("norm.weight") or "layernorm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embedding" in name or "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[1] if p.dim() == 2 else p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * fan_in**-0.5)


def write_checkpoint(out: Path, seed: int) -> dict:
    tok = tokenizer()
    cfg = config(tok)
    model = Mllama(cfg)
    randomize(model, seed)
    write_files(out, cfg, tok)
    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for file, keys in shards.items():
        safetensors.write(out / file, {k: state[k] for k in keys}, {"format": "pt"})
        weight_map.update({k: file for k in keys})
    write_json(out / "model.safetensors.index.json", {"metadata": {"total_size": sum(t.numel() * 2 for t in state.values())}, "weight_map": weight_map})
    return cfg


def write_files(out: Path, cfg: dict, tok: dict, tile: int = TILE) -> None:
    """Everything of a checkpoint folder but the weights."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg)
    write_json(out / "tokenizer.json", tok)
    eos = cfg["text_config"]["eos_token_id"]
    write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "pad_token": "<|finetune_right_pad_id|>",
            "chat_template": CHAT_TEMPLATE,
            "model_max_length": 131072,
        },
    )
    write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    write_json(out / "generation_config.json", {"bos_token_id": cfg["text_config"]["bos_token_id"], "eos_token_id": eos, "do_sample": True, "temperature": 0.6, "top_p": 0.9})
    write_json(out / "preprocessor_config.json", preprocessor(tile))


def preprocessor(tile: int = TILE) -> dict:
    return {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "image_processor_type": "MllamaImageProcessor",
        "max_image_tiles": MAX_TILES,
        "processor_class": "MllamaProcessor",
        "resample": 2,
        "rescale_factor": RESCALE,
        "size": {"height": tile, "width": tile},
    }


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth gradients plus a few blocks, so tiles differ and resizing has something to average."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    img = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), ((x + y) * 7) % 256], axis=-1).astype(np.float64)
    for _ in range(4):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        img[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def png(image: np.ndarray) -> bytes:
    """A plain RGB PNG (filter 0 on every row)."""
    h, w, _ = image.shape
    raw = b"".join(b"\x00" + image[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_images(out: Path, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pre = preprocessor()
    reference = {}
    for i, (name, (h, w)) in enumerate(IMAGES.items()):
        image = synthetic_image(h, w, seed * 100 + i)
        (out / f"{name}.png").write_bytes(png(image))
        p = mllama_processor.process_image(image, pre)
        pv = p["pixel_values"]
        reference[name] = {
            "size": [h, w],
            "resized": p["resized"],
            "num_tiles": p["num_tiles"],
            "pixel_values_dims": list(pv.shape),
            "pixel_values": [round(float(v), 6) for v in pv.reshape(-1)],
            "aspect_ratio_ids": p["aspect_ratio_ids"].reshape(-1).tolist(),
            "aspect_ratio_mask": p["aspect_ratio_mask"].reshape(-1).tolist(),
        }
    write_json(out / "reference.json", reference)


def build(out: Path, seed: int) -> None:
    """`out` is OUT/mllama: the exported folder; the checkpoint and images go beside it."""
    checkpoint = out.parent / "mllama-checkpoint"
    write_checkpoint(checkpoint, seed)
    export(checkpoint, out, ["fp32", "fp16"], log=lambda _msg: None)
    write_images(out.parent / "mllama-images", seed)
