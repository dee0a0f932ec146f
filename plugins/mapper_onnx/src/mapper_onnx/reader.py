"""Read an ONNX model's initializers as a checkpoint: specs from the graph, data on demand.

An ``.onnx`` file is one protobuf message, so the graph (with any inline tensor bytes) is
parsed whole with ``onnx.load(..., load_external_data=False)``; tensors kept in external data
files are not read until asked for. An external location must name a file inside the model's
folder, and its offset and length must fit that file: a model cannot point reads elsewhere.

Names the graph's ``Identity`` nodes give an initializer are read as copies of it (the exporter
stores equal parameters once), and a model whose initializers torch.onnx.export folded warns
with :class:`~mapper_core.plugins.CheckpointWarning` why they have no parameter names
(:mod:`.exported`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from mapper_core.errors import CheckpointError
from mapper_core.plugins import CheckpointWarning, ReaderBase
from mapper_core.specs import TensorSpec

from .exported import folding_note, identity_copies

DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "F32", TensorProto.DOUBLE: "F64", TensorProto.FLOAT16: "F16", TensorProto.BFLOAT16: "BF16",
    TensorProto.FLOAT8E4M3FN: "F8_E4M3", TensorProto.FLOAT8E5M2: "F8_E5M2",
    TensorProto.INT8: "I8", TensorProto.INT16: "I16", TensorProto.INT32: "I32", TensorProto.INT64: "I64",
    TensorProto.UINT8: "U8", TensorProto.UINT16: "U16", TensorProto.UINT32: "U32", TensorProto.UINT64: "U64",
    TensorProto.BOOL: "BOOL",
}
# where a tensor without raw_data keeps its values (onnx.proto); every other type uses int32_data
TYPED_FIELDS: dict[int, str] = {
    TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data", TensorProto.INT64: "int64_data",
    TensorProto.UINT32: "uint64_data", TensorProto.UINT64: "uint64_data",
}


class OnnxReader(ReaderBase):
    """The initializers of an ONNX model (main graph), keyed by their names, and the names ``Identity``
    nodes give them (read as copies)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.model = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError, OSError, ...
            raise CheckpointError(f"{self.path}: not a readable ONNX model: {type(exc).__name__}: {exc}") from None
        self._tensors: dict[str, TensorProto] = {}
        for t in self.model.graph.initializer:
            if t.name in self._tensors:
                raise CheckpointError(f"{self.path}: two initializers are named '{t.name}'; the model is invalid")
            self._tensors[t.name] = t
        self._specs = {name: self._spec(t) for name, t in self._tensors.items()}
        self._ranges = {name: self._external_range(t, self._specs[name]) for name, t in self._tensors.items()
                        if t.data_location == TensorProto.EXTERNAL}
        self._copies = identity_copies(self.model.graph, set(self._tensors))
        self._specs.update({name: self._specs[source] for name, source in self._copies.items()})
        note = folding_note(self.path, self.model, list(self._specs))
        if note:
            warnings.warn(CheckpointWarning(note), stacklevel=2)

    def _spec(self, t: TensorProto) -> TensorSpec:
        name = DTYPES.get(t.data_type)
        if name is None:
            kind = TensorProto.DataType.Name(t.data_type) if t.data_type in TensorProto.DataType.values() else t.data_type
            raise CheckpointError(f"{self.path}: initializer '{t.name}' has ONNX type {kind}, which safetensors cannot "
                                  f"hold; supported: {', '.join(TensorProto.DataType.Name(k) for k in DTYPES)}")
        spec = TensorSpec(name, tuple(int(d) for d in t.dims))
        if any(d < 0 for d in spec.shape):
            raise CheckpointError(f"{self.path}: initializer '{t.name}' has negative dims {list(t.dims)}")
        if t.data_location == TensorProto.EXTERNAL:
            return spec
        if t.HasField("raw_data"):
            if len(t.raw_data) != spec.nbytes:
                raise CheckpointError(f"{self.path}: initializer '{t.name}' holds {len(t.raw_data)} bytes but "
                                      f"{spec.dtype} {list(spec.shape)} needs {spec.nbytes}; the model is damaged")
            return spec
        field = TYPED_FIELDS.get(t.data_type, "int32_data")
        count, numel = len(getattr(t, field)), spec.numel
        if count != numel:
            raise CheckpointError(f"{self.path}: initializer '{t.name}' has {count} {field} values but "
                                  f"{spec.dtype} {list(spec.shape)} needs {numel}; the model is damaged")
        return spec

    def specs(self) -> dict[str, TensorSpec]:
        return dict(self._specs)

    def metadata(self) -> dict[str, str]:
        m = self.model
        meta = {p.key: p.value for p in m.metadata_props}
        meta.update({
            "onnx.ir_version": str(m.ir_version),
            "onnx.opset": ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in m.opset_import),
        })
        if m.producer_name:
            meta["onnx.producer"] = f"{m.producer_name} {m.producer_version}".strip()
        return meta

    def get_tensor(self, key: str) -> Any:
        import torch
        from mapper_core.io.torch_dtypes import NAME_TO_TORCH

        t = self._tensors.get(self._copies.get(key, key))
        if t is None:
            raise CheckpointError(f"{self.path}: no initializer '{key}' in this model")
        spec = self._specs[key]
        dtype = NAME_TO_TORCH[spec.dtype]
        if t.data_location == TensorProto.EXTERNAL:
            data = self._external(t)
        elif t.HasField("raw_data"):
            data = bytearray(t.raw_data)
        else:  # typed fields (float_data, int32_data, ...): numpy_helper knows their packing
            try:
                array = numpy_helper.to_array(t)
            except (ValueError, TypeError, OverflowError) as exc:
                raise CheckpointError(f"{self.path}: initializer '{key}' cannot be read from its typed values "
                                      f"({exc}); the model is damaged") from None
            if spec.dtype in ("BF16", "F8_E4M3", "F8_E5M2"):  # ml_dtypes arrays: reinterpret the bits
                array = array.view(np.uint16 if spec.dtype == "BF16" else np.uint8)
            data = bytearray(np.ascontiguousarray(array).tobytes())
        if not data:
            return torch.empty(spec.shape, dtype=dtype)
        return torch.frombuffer(data, dtype=dtype).reshape(spec.shape)

    def _external_range(self, t: TensorProto, spec: TensorSpec) -> tuple[Path, int, int]:
        """Where an external initializer's bytes are: (file, offset, length), checked when the model is
        opened (so inspect and plan refuse what convert would): a regular file inside the model's
        folder, the range inside it and exactly as long as the tensor."""
        info = {e.key: e.value for e in t.external_data}
        where = f"{self.path}: initializer '{t.name}'"
        location = info.get("location", "")
        base = self.path.resolve().parent
        if "\0" in location:
            raise CheckpointError(f"{where}: external data location {location!r} holds a NUL character; the model is "
                                  "damaged (refused)")
        target = (base / location).resolve()
        if not location or os.path.isabs(location) or base not in target.parents:
            raise CheckpointError(f"{where}: external data location {location!r} is not a file inside the model's "
                                  f"folder ({base}); refused")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else spec.nbytes
        except ValueError:
            raise CheckpointError(f"{where}: external data offset/length are not decimal integers: "
                                  f"offset {info.get('offset')!r}, length {info.get('length')!r}; the model is "
                                  "damaged") from None
        if length != spec.nbytes or offset < 0:
            raise CheckpointError(f"{where}: external data gives {length} bytes at offset {offset}, but "
                                  f"{spec.dtype} {list(spec.shape)} needs {spec.nbytes}; the model is damaged")
        try:
            if not target.is_file():
                raise CheckpointError(f"{where}: external data {location!r} is not a regular file ({target}); the "
                                      "model's data files are missing or damaged")
            size = target.stat().st_size
        except OSError as exc:
            raise CheckpointError(f"{where}: cannot read external data {target}: {exc.strerror or exc}") from None
        if offset + length > size:
            raise CheckpointError(f"{where}: external data {location} is {size} bytes; bytes "
                                  f"{offset}..{offset + length} are past its end; the data file is truncated or "
                                  "belongs to another model")
        return target, offset, length

    def _external(self, t: TensorProto) -> bytearray:
        target, offset, length = self._ranges[t.name]
        try:
            with open(target, "rb") as f:
                f.seek(offset)
                data = bytearray(length)
                got = f.readinto(data)
        except OSError as exc:
            raise CheckpointError(f"{self.path}: initializer '{t.name}': cannot read external data {target}: "
                                  f"{exc.strerror or exc}") from None
        if got != length:
            raise CheckpointError(f"{self.path}: initializer '{t.name}': external data {target.name} ended early "
                                  f"({got} of {length} bytes); was it changed while open?")
        return data
