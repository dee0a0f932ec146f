"""Small safetensors files written by hand (no torch): F32 tensors of the given shapes, each holding
its own distinct bytes, so a test can tell which source tensor ended up where."""
from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path
from typing import Mapping, Sequence


def write_f32(path: Path, shapes: Mapping[str, Sequence[int]]) -> Path:
    """Write ``{key: shape}`` as F32 tensors; tensor i holds the bytes ``i, i+1, ...`` (mod 256)."""
    header, data, offset = {}, bytearray(), 0
    for i, (key, shape) in enumerate(shapes.items()):
        size = 4 * prod(shape)
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        data += bytes((i + j) % 256 for j in range(size))
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + bytes(data))
    return Path(path)
