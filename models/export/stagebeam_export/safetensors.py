"""The safetensors format read and written without the safetensors package: an 8-byte little-endian header length,
a JSON header mapping each tensor name to its dtype, shape and byte range, then the raw little-endian tensor bytes."""

import json
import struct
from pathlib import Path

import numpy as np
import torch

# bf16 has no numpy dtype: its bytes are read as uint16 and widened to float32 (the top half of a float32).
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
NAMES = {v: k for k, v in DTYPES.items()}
BYTES = {"F32": 4, "F16": 2, "BF16": 2}


class SafetensorsError(Exception):
    pass


def read_header(path: Path) -> tuple[dict, int]:
    """The header (tensor name -> {dtype, shape, data_offsets}) and the offset its data starts at."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise SafetensorsError(f"{path}: shorter than the 8-byte header length; expected a safetensors file")
        (length,) = struct.unpack("<Q", head)
        size = path.stat().st_size
        if length > size - 8:
            raise SafetensorsError(f"{path}: header length {length} exceeds the file's {size} bytes; expected a safetensors file")
        try:
            header = json.loads(f.read(length))
        except ValueError as err:
            raise SafetensorsError(f"{path}: header is not JSON ({err})") from None
    header.pop("__metadata__", None)
    for name, entry in header.items():
        if entry.get("dtype") not in DTYPES:
            raise SafetensorsError(f"{path}: tensor {name} has dtype {entry.get('dtype')}; expected one of {', '.join(DTYPES)}")
        begin, end = entry["data_offsets"]
        want = BYTES[entry["dtype"]] * int(np.prod(entry["shape"], dtype=np.int64))
        if end - begin != want or 8 + length + end > size:
            raise SafetensorsError(f"{path}: tensor {name} has bytes [{begin}, {end}); expected {want} bytes inside the file")
    return header, 8 + length


def load_tensor(path: Path, entry: dict, data_start: int, dtype: torch.dtype) -> torch.Tensor:
    """One tensor, read through a memory map and converted to `dtype`."""
    begin, end = entry["data_offsets"]
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start + begin, shape=(end - begin,))
    array = raw.view(NUMPY[entry["dtype"]]).reshape(entry["shape"])
    if entry["dtype"] == "BF16":
        widened = array.astype(np.uint32) << 16
        return torch.from_numpy(widened.view(np.float32)).to(dtype)
    return torch.from_numpy(np.array(array)).to(dtype)


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Writes tensors (float32, float16 or bfloat16) in the safetensors layout, names sorted."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            data = (t.float().numpy().view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            data = t.numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for data in blobs:
            f.write(data)
