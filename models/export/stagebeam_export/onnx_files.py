"""Writing the sessions: torch.onnx.export (opset 17) with the contract's names and symbolic dims, through a file so
that graphs over 2 GB work; one external data file `<name>.onnx_data` when a graph's weights pass EXTERNAL_BYTES;
and the `_fp16` variant: float weights stored as float16 and cast up in the graph, inputs and outputs float32."""

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import load_external_data_for_model

OPSET = 17
# Weights past this go to an external data file (protobuf cannot hold 2 GB; ONNX Runtime maps the file).
EXTERNAL_BYTES = 1 << 30


def trace(module: torch.nn.Module, args: tuple, inputs: list[str], outputs: list[str], dynamic: dict) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.onnx"
        with torch.no_grad():
            torch.onnx.export(
                module.eval(), args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                opset_version=OPSET, do_constant_folding=True,
            )
        model = onnx.load(str(path), load_external_data=True)
    model.producer_name = "stagebeam-export"
    model.producer_version = "1"
    return model


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + "_data")
    data.unlink(missing_ok=True)
    if weight_bytes(model) > EXTERNAL_BYTES:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name, size_threshold=1024)
        onnx.checker.check_model(str(path))
        # save_model moved the weights out of `model` into the data file: read them back, so the caller's graph stays
        # whole for its fp16 copy (--dtype all) and its size in the log.
        load_external_data_for_model(model, str(path.parent))
    else:
        onnx.checker.check_model(model)
        path.write_bytes(model.SerializeToString())


def fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float weights (rank >= 1) as float16 initializers, each cast back to float32 where the graph reads it."""
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and len(init.dims) > 0:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "_upcast"))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return model
