"""Read a GGUF file: the header checked by :mod:`.header`, tensors memory-mapped on demand,
quantized ones dequantized by ``gguf.quants``.

GGUF stores dimensions fastest-first (``ne``); specs use torch order (the reverse). A quantized
tensor (Q8_0, Q4_K, ...) is announced as F32 (or the ``dequantize_to`` dtype) and dequantized
when read; the metadata key ``gguf.quantization`` records each such tensor's original type, so
``mapper inspect`` shows it and ``mapper convert`` carries it into the output.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quant_shape_to_byte_shape, quants

from mapper_core.errors import CheckpointError
from mapper_core.io.formats.torch_archive import ExpansionBudget, expansion_limit
from mapper_core.plugins import ReaderBase
from mapper_core.specs import TensorSpec

from .header import MAX_ARRAY, TensorInfo, gguf_version, read_header

PLAIN: dict[Q, str] = {
    Q.F32: "F32", Q.F16: "F16", Q.BF16: "BF16", Q.F64: "F64",
    Q.I8: "I8", Q.I16: "I16", Q.I32: "I32", Q.I64: "I64",
}
NUMPY: dict[Q, str] = {Q.F32: "f4", Q.F16: "f2", Q.F64: "f8", Q.I8: "i1", Q.I16: "i2", Q.I32: "i4", Q.I64: "i8"}
QUANTIZATION_KEY = "gguf.quantization"
__all__ = ["GgufReader", "MAX_ARRAY", "QUANTIZATION_KEY", "dequantizable"]


def dequantizable() -> list[str]:
    """The quantized types gguf.quants can dequantize in this gguf version."""
    found = []
    for qtype in Q:
        if qtype in PLAIN:
            continue
        try:
            block, size = quants.GGML_QUANT_SIZES[qtype]
            quants.dequantize(np.zeros((1, size), dtype=np.uint8), qtype)
        except Exception:  # NotImplementedError, or a type without sizes
            continue
        found.append(qtype.name)
    return found


class GgufReader(ReaderBase):
    """An open GGUF file (memory-mapped). ``dequantize_to``: F32 (default) or F16. ``allow_expansion``
    lifts the budget on what the header may cost in memory (see :mod:`.header`)."""

    def __init__(self, path: str | Path, dequantize_to: str = "F32", allow_expansion: bool = False):
        self.path = Path(path)
        if dequantize_to not in ("F32", "F16"):
            raise ValueError(f"dequantize_to must be 'F32' or 'F16', got {dequantize_to!r}")
        self.dequantize_to = dequantize_to
        try:
            size = self.path.stat().st_size
            budget = ExpansionBudget(self.path, size, None if allow_expansion else expansion_limit(size))
            self._header = read_header(self.path, budget)
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read it: {exc.strerror or exc}") from None
        self._map: np.memmap | None = None
        self._tensors: dict[str, TensorInfo] = {}
        self._specs: dict[str, TensorSpec] = {}
        self.quantization: dict[str, str] = {}
        for t in self._header.tensors:
            shape = tuple(reversed(t.dims))
            if t.qtype in PLAIN:
                dtype = PLAIN[t.qtype]
            else:
                dtype = self.dequantize_to
                self.quantization[t.name] = t.qtype.name
            self._tensors[t.name] = t
            self._specs[t.name] = TensorSpec(dtype, shape)

    def specs(self) -> dict[str, TensorSpec]:
        return dict(self._specs)

    def metadata(self) -> dict[str, str]:
        meta = {k: v for k, v in self._header.metadata.items() if not k.startswith("GGUF.")}
        if self.quantization:
            meta[QUANTIZATION_KEY] = json.dumps(self.quantization, separators=(",", ":"), sort_keys=True)
        return meta

    def _bytes(self, t: TensorInfo) -> np.ndarray:
        if self._map is None:
            try:
                self._map = np.memmap(self.path, mode="r")
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"{self.path}: cannot map it: {exc}") from None
        if t.start + t.nbytes > len(self._map):
            raise CheckpointError(f"{self.path}: tensor '{t.name}' runs past the end of the file, which is now "
                                  f"{len(self._map):,} bytes (was it changed while open?)")
        return self._map[t.start:t.start + t.nbytes].view(type=np.ndarray)

    def get_tensor(self, key: str) -> Any:
        """A numpy array; a BF16 tensor, which numpy cannot hold, as a torch tensor."""
        t = self._tensors.get(key)
        if t is None:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this file")
        shape = self._specs[key].shape
        raw = self._bytes(t)
        if t.qtype == Q.BF16:
            return self._bf16(raw, shape)
        if t.qtype in NUMPY:
            stored = np.dtype(self._header.byte_order + NUMPY[t.qtype])
            # a copy in this machine's byte order: the map is read-only
            return raw.view(stored).astype(stored.newbyteorder("="), copy=True).reshape(shape)
        blocks = raw.reshape(quant_shape_to_byte_shape(shape, t.qtype))  # a quantized tensor has dims
        try:
            values = quants.dequantize(blocks, t.qtype)
        except NotImplementedError:
            raise CheckpointError(f"{self.path}: tensor '{key}' is {t.qtype.name}, which gguf "
                                  f"{gguf_version()} cannot dequantize; supported: {', '.join(dequantizable())}") from None
        values = values.reshape(shape)
        return values.astype(np.float16) if self.dequantize_to == "F16" else values.astype(np.float32, copy=False)

    def _bf16(self, raw: np.ndarray, shape: tuple[int, ...]) -> Any:
        """numpy has no bfloat16: the bytes are the bfloat16 bit patterns in the file's byte order."""
        import torch

        bits = raw.view(np.dtype(self._header.byte_order + "u2"))
        native = bits.astype(np.uint16)  # a copy in this machine's byte order: the map is read-only
        return torch.from_numpy(native.view(np.int16)).view(torch.bfloat16).reshape(shape)

    def close(self) -> None:
        self._tensors.clear()
        self._map = None  # dropping the memmap unmaps the file
