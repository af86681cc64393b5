"""Idefics3 / SmolVLM layout (HuggingFaceTB/SmolVLM-256M-Instruct): image splitting into max_image_size tiles plus a
global image, <fake_token_around_image>/<row_r_col_c>/<global-img> prompt tokens, SmolLM2 ByteLevel tokenizer."""

from pathlib import Path

import torch

from .common import RESCALE, export_text, text_config, write_json, write_onnx
from .text_decoder import TextDims
from .tokenizers import smollm2_tokenizer, vocab_size
from .vision import Idefics3Vision, VisionDims

MAX_GRID = 6  # SmolVLM ships <row_1_col_1> .. <row_6_col_6>

CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def build(out: Path, seed: int) -> None:
    torch.manual_seed(seed)
    grid_tokens = [f"<row_{r}_col_{c}>" for r in range(1, MAX_GRID + 1) for c in range(1, MAX_GRID + 1)]
    tokenizer = smollm2_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *grid_tokens])
    ids = {tok["content"]: tok["id"] for tok in tokenizer["added_tokens"]}
    text = TextDims(vocab=vocab_size(tokenizer))
    vision = VisionDims(hidden=32, heads=2, layers=1, intermediate=64, patch=8, image=32)
    scale_factor = 2
    image_seq_len = (vision.image // vision.patch) ** 2 // scale_factor**2

    write_json(out / "tokenizer.json", tokenizer)
    write_json(
        out / "tokenizer_config.json",
        {
            "add_prefix_space": False,
            "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in tokenizer["added_tokens"]},
            "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
            "bos_token": "<|im_start|>",
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<end_of_utterance>",
            "legacy": False,
            "model_max_length": 8192,
            "pad_token": "<|im_end|>",
            "processor_class": "Idefics3Processor",
            "tokenizer_class": "GPT2Tokenizer",
            "truncation_side": "left",
            "unk_token": "<|endoftext|>",
            "vocab_size": len(tokenizer["model"]["vocab"]),
        },
    )
    write_json(
        out / "special_tokens_map.json",
        {
            "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
            "bos_token": "<|im_start|>",
            "eos_token": "<end_of_utterance>",
            "pad_token": "<|im_end|>",
            "unk_token": "<|endoftext|>",
        },
    )
    write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    write_json(out / "processor_config.json", {"image_seq_len": image_seq_len, "processor_class": "Idefics3Processor"})
    write_json(
        out / "preprocessor_config.json",
        {
            "do_convert_rgb": True,
            "do_image_splitting": True,
            "do_normalize": True,
            "do_pad": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "Idefics3ImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "max_image_size": {"longest_edge": vision.image},
            "processor_class": "Idefics3Processor",
            "resample": 1,
            "rescale_factor": RESCALE,
            "size": {"longest_edge": 3 * vision.image},
        },
    )
    write_json(
        out / "config.json",
        {
            "architectures": ["Idefics3ForConditionalGeneration"],
            "model_type": "idefics3",
            "image_token_id": ids["<image>"],
            "pad_token_id": ids["<|im_end|>"],
            "scale_factor": scale_factor,
            "tie_word_embeddings": False,
            "vocab_size": text.vocab,
            "text_config": {
                "model_type": "llama",
                "architectures": ["VLlama3ForCausalLM"],
                **text_config(text),
                "bos_token_id": ids["<|im_start|>"],
                "eos_token_id": ids["<end_of_utterance>"],
                "pad_token_id": ids["<|im_end|>"],
                "tie_word_embeddings": False,
            },
            "vision_config": {
                "model_type": "idefics3_vision",
                "hidden_act": "gelu_pytorch_tanh",
                "hidden_size": vision.hidden,
                "image_size": vision.image,
                "intermediate_size": vision.intermediate,
                "layer_norm_eps": 1e-6,
                "num_attention_heads": vision.heads,
                "num_hidden_layers": vision.layers,
                "patch_size": vision.patch,
            },
            "torch_dtype": "float32",
            "transformers_version": "4.47.0",
        },
    )
    write_json(
        out / "generation_config.json",
        {
            "_from_model_config": True,
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": [ids["<end_of_utterance>"], ids["<|im_end|>"]],
            "pad_token_id": ids["<|im_end|>"],
        },
    )

    export_text(text, out, tie_word_embeddings=False)
    example = torch.randn(1, 3, 3, vision.image, vision.image)
    example[0, 2] = 0  # a padding image, so the graph keeps the drop-empty-images path
    write_onnx(
        Idefics3Vision(vision, text.hidden, scale_factor),
        (example, torch.ones(1, 3, vision.image, vision.image, dtype=torch.bool)),
        out,
        "vision_encoder",
        ["pixel_values", "pixel_attention_mask"],
        ["image_features"],
        {
            "pixel_values": {0: "batch_size", 1: "num_images"},
            "pixel_attention_mask": {0: "batch_size", 1: "num_images"},
            "image_features": {0: "num_real_images"},
        },
    )

