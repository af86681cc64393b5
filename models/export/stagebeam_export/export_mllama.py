"""mllama checkpoint -> the engine's model folder (the contract is in models/export/README.md)."""

import json
import shutil
import time
from pathlib import Path

import torch

from . import onnx_files
from .checkpoint import Checkpoint
from .mllama import DecoderExport, EmbedExport, Mllama, VisionExport

# The processor and tokenizer files a checkpoint carries, copied as they are.
COPIED = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "processor_config.json",
    "generation_config.json",
]
REQUIRED = ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]
SUFFIX = {"fp32": "", "fp16": "_fp16"}


def session_io(model: Mllama) -> dict:
    """Names, example inputs and symbolic dims of the three sessions."""
    t, v = model.text, model.vis
    cross_len = v.max_tiles * v.patches
    vision_out, cross_in, cross_dyn = [], [], {}
    for j, layer in enumerate(t.cross_layers):
        for kind in ("key", "value"):
            vision_out.append(f"cross_key_values.{j}.{kind}")
            cross_dyn[f"cross_key_values.{j}.{kind}"] = {0: "cross_batch_size"}
    vision = dict(
        module=VisionExport(model),
        args=(
            torch.randn(1, v.max_tiles, v.channels, v.image_size, v.image_size),
            torch.tensor([2]),
            torch.tensor([[1, 1] + [0] * (v.max_tiles - 2)]),
        ),
        inputs=["pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"],
        outputs=vision_out,
        dynamic={
            "pixel_values": {0: "batch_size"},
            "aspect_ratio_ids": {0: "batch_size"},
            "aspect_ratio_mask": {0: "batch_size"},
            **{name: {0: "batch_size"} for name in vision_out},
        },
    )
    embed = dict(
        module=EmbedExport(model),
        args=(torch.tensor([[1, 2, 3]]),),
        inputs=["input_ids"],
        outputs=["inputs_embeds"],
        dynamic={"input_ids": {0: "batch_size", 1: "sequence_length"}, "inputs_embeds": {0: "batch_size", 1: "sequence_length"}},
    )
    # Traced with two rows over one item's cross states (batch 1 broadcasts), so neither batch size is baked in.
    batch, seq, past = 2, 5, 3
    inputs = ["inputs_embeds", "attention_mask", "position_ids", "cross_attention_mask", "logits_to_keep"]
    outputs = ["logits"]
    dynamic = {
        "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "cross_attention_mask": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "logits_length"},
    }
    kv = []
    for i in range(len(t.self_layers)):
        for kind in ("key", "value"):
            kv.append(torch.randn(batch, t.kv_heads, past, t.head_dim))
            inputs.append(f"past_key_values.{i}.{kind}")
            outputs.append(f"present.{i}.{kind}")
            dynamic[f"past_key_values.{i}.{kind}"] = {0: "batch_size", 2: "past_sequence_length"}
            dynamic[f"present.{i}.{kind}"] = {0: "batch_size", 2: "total_sequence_length"}
    for name in vision_out:
        kv.append(torch.randn(1, t.kv_heads, cross_len, t.head_dim))
        inputs.append(name)
    dynamic.update(cross_dyn)
    mask = torch.ones(batch, seq, v.max_tiles, dtype=torch.long)
    decoder = dict(
        module=DecoderExport(model),
        args=(
            torch.randn(batch, seq, t.hidden),
            torch.ones(batch, past + seq, dtype=torch.long),
            torch.arange(past, past + seq).unsqueeze(0).repeat(batch, 1),
            mask,
            torch.tensor(2),  # neither 1 nor seq, so the trace cannot mistake it for either
            *kv,
        ),
        inputs=inputs,
        outputs=outputs,
        dynamic=dynamic,
    )
    return {"vision_encoder": vision, "embed_tokens": embed, "decoder_model_merged": decoder}


def load_model(checkpoint_dir: Path) -> tuple[Mllama, Checkpoint]:
    ckpt = Checkpoint(checkpoint_dir)
    if ckpt.config.get("model_type") != "mllama":
        raise ValueError(f"{checkpoint_dir}/config.json: model_type {ckpt.config.get('model_type')!r}; this exporter handles mllama")
    model = Mllama(ckpt.config).eval()
    ckpt.load_into(model, torch.float32)
    return model, ckpt


def export(checkpoint_dir: Path, out: Path, dtypes: list[str], log=print) -> None:
    missing = [f for f in REQUIRED if not (checkpoint_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{checkpoint_dir}: missing {', '.join(missing)}; expected the tokenizer and processor files beside the weights")
    started = time.time()
    model, ckpt = load_model(checkpoint_dir)
    params = sum(p.numel() for p in model.parameters())
    log(f"loaded {params:,} parameters ({', '.join(sorted(ckpt.dtypes()))}) from {checkpoint_dir} in {time.time() - started:.0f} s")
    write_folder(model, ckpt.config, checkpoint_dir, out, dtypes, log)
    log(f"done: {out} in {time.time() - started:.0f} s")


def write_folder(model: Mllama, config: dict, files_dir: Path, out: Path, dtypes: list[str], log=print) -> None:
    """The model folder: the three sessions per dtype, the processor and tokenizer files of `files_dir`, config.json."""
    out.mkdir(parents=True, exist_ok=True)
    for name, io in session_io(model).items():
        t0 = time.time()
        graph = onnx_files.trace(io["module"], io["args"], io["inputs"], io["outputs"], io["dynamic"])
        for dtype in dtypes:
            if dtype == "fp16":
                graph = onnx_files.fp16_weights(graph)
            path = out / "onnx" / f"{name}{SUFFIX[dtype]}.onnx"
            onnx_files.save(graph, path)
            log(f"wrote {path} ({onnx_files.weight_bytes(graph) / 1e6:.1f} MB of weights) in {time.time() - t0:.0f} s")
        del graph
    write_metadata(config, files_dir, out, dtypes)


def write_metadata(config: dict, files_dir: Path, out: Path, dtypes: list[str]) -> None:
    """A model folder's files beside its sessions: the processor and tokenizer files of `files_dir`, config.json."""
    out.mkdir(parents=True, exist_ok=True)
    for f in COPIED:
        if (files_dir / f).is_file():
            shutil.copyfile(files_dir / f, out / f)
    config = dict(config)
    if "fp32" not in dtypes:
        config["transformers.js_config"] = {**config.get("transformers.js_config", {}), "dtype": dtypes[0]}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if not (out / "generation_config.json").is_file():
        eos = config["text_config"].get("eos_token_id", config.get("eos_token_id"))
        bos = config["text_config"].get("bos_token_id", config.get("bos_token_id"))
        (out / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos, "do_sample": False}, indent=2) + "\n")
