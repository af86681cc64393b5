"""llava-1.5 layout (llava-hf/llava-1.5-7b-hf converted as onnx-community does): CLIP image processor, Llama tokenizer."""

from pathlib import Path

import torch

from .common import CLIP_MEAN, CLIP_STD, RESCALE, export_text, text_config, write_json, write_onnx
from .text_decoder import TextDims
from .tokenizers import llama_tokenizer, token_id, vocab_size
from .vision import LlavaVision, VisionDims

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def special(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}


def build(out: Path, seed: int) -> None:
    torch.manual_seed(seed)
    tokenizer = llama_tokenizer(["<image>", "<pad>"])
    image_id, pad_id = token_id(tokenizer, "<image>"), token_id(tokenizer, "<pad>")
    text = TextDims(vocab=vocab_size(tokenizer))
    vision = VisionDims(hidden=32, heads=2, layers=2, intermediate=64, patch=8, image=32)
    patches = (vision.image // vision.patch) ** 2

    write_json(out / "tokenizer.json", tokenizer)
    write_json(
        out / "tokenizer_config.json",
        {
            "add_bos_token": True,
            "add_eos_token": False,
            "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in tokenizer["added_tokens"]},
            "bos_token": "<s>",
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "eos_token": "</s>",
            "legacy": False,
            "model_max_length": 4096,
            "pad_token": "<pad>",
            "padding_side": "left",
            "processor_class": "LlavaProcessor",
            "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer",
            "unk_token": "<unk>",
            "use_default_system_prompt": False,
        },
    )
    write_json(
        out / "special_tokens_map.json",
        {
            "bos_token": special("<s>"),
            "eos_token": special("</s>"),
            "pad_token": special("<pad>"),
            "unk_token": special("<unk>"),
        },
    )
    write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    write_json(
        out / "processor_config.json",
        {
            "image_token": "<image>",
            "num_additional_image_tokens": 1,
            "patch_size": vision.patch,
            "processor_class": "LlavaProcessor",
            "vision_feature_select_strategy": "default",
        },
    )
    write_json(
        out / "preprocessor_config.json",
        {
            "crop_size": {"height": vision.image, "width": vision.image},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": CLIP_MEAN,
            "image_processor_type": "CLIPImageProcessor",
            "image_std": CLIP_STD,
            "processor_class": "LlavaProcessor",
            "resample": 3,
            "rescale_factor": RESCALE,
            "size": {"shortest_edge": vision.image},
        },
    )
    write_json(
        out / "config.json",
        {
            "architectures": ["LlavaForConditionalGeneration"],
            "model_type": "llava",
            "ignore_index": -100,
            "image_token_index": image_id,
            "image_seq_length": patches,
            "multimodal_projector_bias": True,
            "pad_token_id": pad_id,
            "projector_hidden_act": "gelu",
            "tie_word_embeddings": False,
            "vision_feature_layer": -2,
            "vision_feature_select_strategy": "default",
            "text_config": {
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                **text_config(text),
                "bos_token_id": 1,
                "eos_token_id": 2,
                "pad_token_id": pad_id,
                "tie_word_embeddings": False,
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_act": "quick_gelu",
                "hidden_size": vision.hidden,
                "image_size": vision.image,
                "intermediate_size": vision.intermediate,
                "layer_norm_eps": 1e-5,
                "num_attention_heads": vision.heads,
                "num_hidden_layers": vision.layers,
                "patch_size": vision.patch,
                "projection_dim": text.hidden,
            },
            "torch_dtype": "float32",
            "transformers_version": "4.47.0",
        },
    )
    write_json(out / "generation_config.json", {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": pad_id})

    export_text(text, out, tie_word_embeddings=False)
    write_onnx(
        LlavaVision(vision, text.hidden),
        (torch.randn(1, 3, vision.image, vision.image),),
        out,
        "vision_encoder",
        ["pixel_values"],
        ["image_features"],
        {"pixel_values": {0: "batch_size"}, "image_features": {0: "batch_size"}},
    )
