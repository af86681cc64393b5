"""A Hugging Face checkpoint folder: config.json and its safetensors (one file, or shards listed by
model.safetensors.index.json), tensor names mapped to one naming and checked against the architecture's."""

import json
from pathlib import Path

import torch

from . import safetensors

INDEX = "model.safetensors.index.json"

# Newer transformers versions save `model.language_model.…` where the hub's checkpoints have
# `language_model.model.…`; both map to the hub naming, which the architecture uses.
RENAMES = [
    ("model.language_model.", "language_model.model."),
    ("model.vision_model.", "vision_model."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("lm_head.", "language_model.lm_head."),
]


class CheckpointError(Exception):
    pass


def hub_name(name: str) -> str:
    for new, hub in RENAMES:
        if name.startswith(new):
            return hub + name[len(new) :]
    return name


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json; expected a Hugging Face checkpoint folder")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise CheckpointError(f"{path}: not JSON ({err})") from None


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files holding the weights: those the index names, else the folder's one file."""
    index = folder / INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: expected a non-empty weight_map")
        files = sorted(set(weight_map.values()))
        for f in files:
            if not (folder / f).is_file():
                raise CheckpointError(f"{index}: names shard {f}, which is not in {folder}")
        return [folder / f for f in files]
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise CheckpointError(f"{folder}: expected {INDEX} or exactly one .safetensors file; found {found}")
    return files


class Checkpoint:
    """The folder's tensors by hub name, read lazily (an 11B checkpoint is not held twice)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.config = read_config(folder)
        self.entries: dict[str, tuple[Path, dict, int]] = {}
        for path in shard_files(folder):
            try:
                header, start = safetensors.read_header(path)
            except safetensors.SafetensorsError as err:
                raise CheckpointError(str(err)) from None
            for name, entry in header.items():
                key = hub_name(name)
                if key in self.entries:
                    raise CheckpointError(f"{path}: tensor {name} is also in {self.entries[key][0].name}; expected each tensor once")
                self.entries[key] = (path, entry, start)

    def dtypes(self) -> set[str]:
        return {entry["dtype"] for _, entry, _ in self.entries.values()}

    def load_into(self, module: torch.nn.Module, dtype: torch.dtype) -> None:
        """Copies every tensor into the module's parameter of the same name, refusing a missing, unexpected or
        misshapen one by name."""
        params = dict(module.state_dict())
        for name in sorted(params):
            if name not in self.entries:
                raise CheckpointError(f"{self.folder}: missing tensor {name} (shape {list(params[name].shape)}) that config.json's architecture needs")
        for name in sorted(self.entries):
            if name not in params:
                raise CheckpointError(f"{self.folder}: unexpected tensor {name} in {self.entries[name][0].name}; config.json's architecture has no such parameter")
        with torch.no_grad():
            for name, target in params.items():
                path, entry, start = self.entries[name]
                if list(entry["shape"]) != list(target.shape):
                    raise CheckpointError(f"{path}: tensor {name} has shape {entry['shape']}; expected {list(target.shape)} from config.json")
                target.copy_(safetensors.load_tensor(path, entry, start, dtype))
