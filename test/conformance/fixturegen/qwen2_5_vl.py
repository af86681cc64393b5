"""Qwen2.5-VL layout (onnx-community/Qwen2.5-VL-3B-Instruct, as transformers.js 4.3 loads it): the Qwen2-VL fixture's
files and graphs under Qwen2.5-VL's names. The vision encoder's grid input is `image_grid_thw`
(`Qwen2_5_VLForConditionalGeneration.image_grid_thw_name`); config.json keeps the text model's fields under
`text_config` (model_type qwen2_5_vl_text), the only place transformers.js's getNormalizedConfig reads them for
qwen2_5_vl, and the vision fields under Qwen2.5-VL's names. The tower itself stays Qwen2-VL's (LayerNorm, quick-GELU,
no window attention): nothing at the boundary depends on it."""

from pathlib import Path

from .common import text_config
from .qwen2_vl import Flavour, write
from .text_decoder import TextDims
from .vision import VisionDims


def qwen2_5_vl_config(text: TextDims, ids: dict, vision: VisionDims, temporal: int, merge: int) -> dict:
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "text_config": {
            "model_type": "qwen2_5_vl_text",
            **text_config(text),
            "attention_dropout": 0.0,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "max_window_layers": text.layers,
            "rope_scaling": {"type": "mrope", "mrope_section": list(text.mrope_section)},
            "sliding_window": 32768,
            "tie_word_embeddings": False,
            "use_cache": True,
            "use_sliding_window": False,
        },
        "vision_config": {
            "model_type": "qwen2_5_vl",
            "depth": vision.layers,
            "hidden_act": "quick_gelu",
            "hidden_size": vision.hidden,
            "in_channels": 3,
            "intermediate_size": vision.intermediate,
            "num_heads": vision.heads,
            "out_hidden_size": text.hidden,
            "patch_size": vision.patch,
            "spatial_merge_size": merge,
            "temporal_patch_size": temporal,
            # Used by Python's get_rope_index for video frames only (images get second_per_grid_t = 0).
            "tokens_per_second": 2,
        },
    }


QWEN2_5_VL = Flavour(processor_class="Qwen2_5_VLProcessor", grid_input="image_grid_thw", config=qwen2_5_vl_config)


def build(out: Path, seed: int) -> None:
    write(out, seed, QWEN2_5_VL)
