"""What every family writes the same way: JSON files and the embed_tokens + decoder_model_merged pair."""

import json
from pathlib import Path

import torch
from torch import nn

from .onnx_io import export, fp16_weights, save
from .text_decoder import Decoder, EmbedTokens, TextDims

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
RESCALE = 0.00392156862745098


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_onnx(module: nn.Module, args: tuple, out: Path, name: str, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    model = export(module.eval(), args, out / "onnx" / f"{name}.onnx", inputs, outputs, dynamic)
    save(fp16_weights(model), out / "onnx" / f"{name}_fp16.onnx")


def text_config(dims: TextDims) -> dict:
    """The decoder fields transformers.js and transformers read (flat for qwen2_vl, under text_config otherwise)."""
    return {
        "hidden_size": dims.hidden,
        "intermediate_size": dims.intermediate,
        "num_attention_heads": dims.heads,
        "num_key_value_heads": dims.kv_heads,
        "num_hidden_layers": dims.layers,
        "head_dim": dims.head_dim,
        "rms_norm_eps": dims.rms_eps,
        "rope_theta": dims.rope_theta,
        "vocab_size": dims.vocab,
        "max_position_embeddings": 2048,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }


def export_text(dims: TextDims, out: Path, tie_word_embeddings: bool) -> None:
    embed = nn.Embedding(dims.vocab, dims.hidden)
    decoder = Decoder(dims, embed, tie_word_embeddings)
    write_onnx(
        EmbedTokens(embed),
        (torch.tensor([[1, 2, 3]]),),
        out,
        "embed_tokens",
        ["input_ids"],
        ["inputs_embeds"],
        {"input_ids": {0: "batch_size", 1: "sequence_length"}, "inputs_embeds": {0: "batch_size", 1: "sequence_length"}},
    )
    batch, seq, past = 1, 5, 3
    d = dims.head_dim
    pkv = []
    inputs = ["inputs_embeds", "attention_mask", "position_ids"]
    outputs = ["logits"]
    dynamic = {
        "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    for i in range(dims.layers):
        for kind in ("key", "value"):
            pkv.append(torch.randn(batch, dims.kv_heads, past, d))
            inputs.append(f"past_key_values.{i}.{kind}")
            outputs.append(f"present.{i}.{kind}")
            dynamic[f"past_key_values.{i}.{kind}"] = {0: "batch_size", 2: "past_sequence_length"}
            dynamic[f"present.{i}.{kind}"] = {0: "batch_size", 2: "total_sequence_length"}
    positions = torch.arange(past, past + seq).unsqueeze(0)
    if dims.mrope_section is not None:
        positions = positions.unsqueeze(0).expand(3, batch, seq).contiguous()
        dynamic["position_ids"] = {1: "batch_size", 2: "sequence_length"}
    else:
        dynamic["position_ids"] = {0: "batch_size", 1: "sequence_length"}
    args = (torch.randn(batch, seq, dims.hidden), torch.ones(batch, past + seq, dtype=torch.long), positions, *pkv)
    write_onnx(decoder, args, out, "decoder_model_merged", inputs, outputs, dynamic)
