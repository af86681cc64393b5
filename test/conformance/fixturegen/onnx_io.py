"""ONNX export with published names and symbolic dims, plus the `_fp16` variant transformers.js's conversion makes
(weights stored as float16, graph inputs and outputs kept float32: convert_float_to_float16(keep_io_types=True))."""

import io
import sys
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "models" / "export"))
from stagebeam_export.onnx_files import fp16_weights as exporter_fp16_weights  # noqa: E402

OPSET = 17


def export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            buffer,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.producer_name = "stagebeam-fixtures"
    model.producer_version = "1"
    onnx.checker.check_model(model)
    save(model, path)
    return model


def save(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A checked copy of `model` in the exporter's `_fp16` form (models/export: one conversion for both)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    exporter_fp16_weights(out)
    onnx.checker.check_model(out)
    return out
