"""Qwen2-VL layout (onnx-community/Qwen2-VL-2B-Instruct): smart-resize to patch*merge multiples within
min_pixels..max_pixels, flattened patches + image_grid_thw, <|vision_start|><|image_pad|><|vision_end|>, M-RoPE
position_ids [3, batch, seq], flat (text fields at the top level) config.json. `write` also serves Qwen2.5-VL
(qwen2_5_vl.py), whose folders differ only in the files' names and config layout, not in what the graphs compute."""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .common import CLIP_MEAN, CLIP_STD, RESCALE, export_text, text_config, write_json, write_onnx
from .text_decoder import TextDims
from .tokenizers import qwen2_tokenizer, vocab_size
from .vision import Qwen2VLVision, VisionDims

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class Flavour:
    """What a Qwen VL generation names differently around the same graphs."""

    processor_class: str
    # The vision encoder's grid input: transformers.js's `image_grid_thw_name` for the family.
    grid_input: str
    # config.json from (text dims, token ids by content, vision dims, temporal patch, merge size).
    config: Callable[[TextDims, dict, VisionDims, int, int], dict]


def qwen2_vl_config(text: TextDims, ids: dict, vision: VisionDims, temporal: int, merge: int) -> dict:
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        **text_config(text),
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "image_token_id": ids["<|image_pad|>"],
        "max_window_layers": text.layers,
        "rope_scaling": {"type": "mrope", "mrope_section": list(text.mrope_section)},
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "use_cache": True,
        "use_sliding_window": False,
        "video_token_id": ids["<|video_pad|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "vision_config": {
            "depth": vision.layers,
            "embed_dim": vision.hidden,
            "hidden_act": "quick_gelu",
            "hidden_size": text.hidden,
            "in_chans": 3,
            "mlp_ratio": vision.intermediate / vision.hidden,
            "num_heads": vision.heads,
            "patch_size": vision.patch,
            "spatial_merge_size": merge,
            "spatial_patch_size": vision.patch,
            "temporal_patch_size": temporal,
        },
        "transformers_version": "4.47.0",
    }


QWEN2_VL = Flavour(processor_class="Qwen2VLProcessor", grid_input="grid_thw", config=qwen2_vl_config)


def build(out: Path, seed: int) -> None:
    write(out, seed, QWEN2_VL)


def write(out: Path, seed: int, flavour: Flavour) -> None:
    torch.manual_seed(seed)
    tokenizer = qwen2_tokenizer(SPECIALS)
    ids = {tok["content"]: tok["id"] for tok in tokenizer["added_tokens"]}
    # head_dim 16 -> 8 rotary frequencies, split 2:3:3 between t, h, w as Qwen2-VL's [16, 24, 24] splits 64.
    text = TextDims(vocab=vocab_size(tokenizer), qkv_bias=True, rope_theta=1000000.0, rms_eps=1e-6, mrope_section=(2, 3, 3))
    vision = VisionDims(hidden=32, heads=2, layers=1, intermediate=64, patch=4)
    temporal, merge = 2, 2
    factor = vision.patch * merge
    min_pixels, max_pixels = 4 * factor * factor, 16 * factor * factor

    write_json(out / "tokenizer.json", tokenizer)
    write_json(
        out / "tokenizer_config.json",
        {
            "add_prefix_space": False,
            "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in tokenizer["added_tokens"]},
            "additional_special_tokens": SPECIALS[1:],
            "bos_token": None,
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>",
            "errors": "replace",
            "model_max_length": 32768,
            "pad_token": "<|endoftext|>",
            "padding_side": "left",
            "processor_class": flavour.processor_class,
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        },
    )
    write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    write_json(
        out / "preprocessor_config.json",
        {
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": CLIP_MEAN,
            "image_processor_type": "Qwen2VLImageProcessor",
            "image_std": CLIP_STD,
            "max_pixels": max_pixels,
            "merge_size": merge,
            "min_pixels": min_pixels,
            "patch_size": vision.patch,
            "processor_class": flavour.processor_class,
            "resample": 3,
            "rescale_factor": RESCALE,
            "size": {"longest_edge": max_pixels, "shortest_edge": min_pixels},
            "temporal_patch_size": temporal,
        },
    )
    write_json(out / "config.json", flavour.config(text, ids, vision, temporal, merge))
    write_json(
        out / "generation_config.json",
        {
            "bos_token_id": ids["<|endoftext|>"],
            "do_sample": True,
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"],
            "repetition_penalty": 1.0,
            "temperature": 0.01,
            "top_k": 1,
            "top_p": 0.001,
        },
    )

    export_text(text, out, tie_word_embeddings=False)
    grid = torch.tensor([[1, 4, 6]])
    write_onnx(
        Qwen2VLVision(vision, text.hidden, temporal, merge),
        (torch.randn(int(grid.prod()), 3 * temporal * vision.patch**2), grid),
        out,
        "vision_encoder",
        ["pixel_values", flavour.grid_input],
        ["image_features"],
        {"pixel_values": {0: "num_patches"}, flavour.grid_input: {0: "num_images"}, "image_features": {0: "num_image_tokens"}},
    )
