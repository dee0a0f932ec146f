"""Read a GGUF file memory-mapped with ``gguf.GGUFReader``: specs from the tensor infos, metadata
from the key-value section, tensors on demand, quantized ones dequantized by ``gguf.quants``.

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
from gguf import GGUFReader, GGUFValueType
from gguf import quants

from mapper_core.errors import CheckpointError
from mapper_core.plugins import ReaderBase
from mapper_core.specs import TensorSpec

PLAIN: dict[Q, str] = {
    Q.F32: "F32", Q.F16: "F16", Q.BF16: "BF16", Q.F64: "F64",
    Q.I8: "I8", Q.I16: "I16", Q.I32: "I32", Q.I64: "I64",
}
QUANTIZATION_KEY = "gguf.quantization"
MAX_ARRAY = 1024  # longer arrays (a tokenizer's vocabulary) are summarised, not copied into metadata


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
    """An open GGUF file (memory-mapped). ``dequantize_to``: F32 (default) or F16."""

    def __init__(self, path: str | Path, dequantize_to: str = "F32"):
        self.path = Path(path)
        if dequantize_to not in ("F32", "F16"):
            raise ValueError(f"dequantize_to must be 'F32' or 'F16', got {dequantize_to!r}")
        self.dequantize_to = dequantize_to
        try:
            self._reader = GGUFReader(self.path, "r")
        except Exception as exc:  # gguf raises ValueError, struct errors, numpy errors for damaged files
            raise CheckpointError(f"{self.path}: not a readable GGUF file: {type(exc).__name__}: {exc}") from None
        self._tensors: dict[str, Any] = {}
        self._specs: dict[str, TensorSpec] = {}
        self.quantization: dict[str, str] = {}
        for t in self._reader.tensors:
            if t.name in self._tensors:
                raise CheckpointError(f"{self.path}: two tensors are named '{t.name}'; the file is damaged")
            shape = tuple(int(n) for n in reversed(t.shape.tolist()))
            if t.tensor_type in PLAIN:
                dtype = PLAIN[t.tensor_type]
            else:
                dtype = self.dequantize_to
                self.quantization[t.name] = t.tensor_type.name
            self._tensors[t.name] = t
            self._specs[t.name] = TensorSpec(dtype, shape)

    def specs(self) -> dict[str, TensorSpec]:
        return dict(self._specs)

    def metadata(self) -> dict[str, str]:
        meta: dict[str, str] = {}
        for key, field in self._reader.fields.items():
            if key.startswith("GGUF."):  # version and counts: the container's, not the model's
                continue
            meta[key] = _field_text(field)
        if self.quantization:
            meta[QUANTIZATION_KEY] = json.dumps(self.quantization, separators=(",", ":"), sort_keys=True)
        return meta

    def get_tensor(self, key: str) -> Any:
        """A numpy array; a BF16 tensor, which numpy cannot hold, as a torch tensor."""
        t = self._tensors.get(key)
        if t is None:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this file")
        shape = self._specs[key].shape
        if t.tensor_type == Q.BF16:
            return self._bf16(t, shape)
        if t.tensor_type in PLAIN:
            return np.array(t.data, copy=True).reshape(shape)  # a copy: the map is read-only
        try:
            values = quants.dequantize(t.data, t.tensor_type)
        except NotImplementedError:
            raise CheckpointError(f"{self.path}: tensor '{key}' is {t.tensor_type.name}, which gguf "
                                  f"{_gguf_version()} cannot dequantize; supported: {', '.join(dequantizable())}") from None
        values = values.reshape(shape)
        return values.astype(np.float16) if self.dequantize_to == "F16" else values.astype(np.float32, copy=False)

    def _bf16(self, t: Any, shape: tuple[int, ...]) -> Any:
        """numpy has no bfloat16: gguf hands BF16 data over as raw bytes (rows of 2 bytes per value),
        which are the bfloat16 bit patterns in the file's byte order."""
        import torch

        bits = np.asarray(t.data).reshape(-1).view(np.dtype(np.uint16).newbyteorder(self._reader.byte_order))
        native = bits.astype(np.uint16)  # a copy in this machine's byte order: the map is read-only
        return torch.from_numpy(native.view(np.int16)).view(torch.bfloat16).reshape(shape)

    def close(self) -> None:
        # GGUFReader holds a numpy memmap; dropping it (and the tensor views) unmaps the file.
        self._tensors.clear()
        self._reader = None  # type: ignore[assignment]


def _field_text(field: Any) -> str:
    value = field.contents()
    types = [GGUFValueType(t) for t in field.types]
    if types and types[0] == GGUFValueType.STRING:
        return str(value)
    if types and types[0] == GGUFValueType.ARRAY and len(value) > MAX_ARRAY:
        kind = types[1].name.lower() if len(types) > 1 else "value"
        return f"[array of {len(value)} {kind}; not copied]"
    if isinstance(value, (np.generic,)):
        value = value.item()
    return json.dumps(value, separators=(",", ":"), default=lambda v: v.item() if hasattr(v, "item") else str(v))


def _gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")
