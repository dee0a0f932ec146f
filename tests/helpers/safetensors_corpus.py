"""Edge-case safetensors files and the two readers to judge them: ours and the official library.

``CORPUS`` maps a case name to the file's bytes. ``official(path, framework)`` and ``ours(path)``
each return an :class:`Outcome`: accepted with every tensor's raw bytes, or refused with the
reason. ``difference(blob, ours, theirs)`` names the documented difference
(``mapper_core.io.formats.safetensors_header.DIFFERENCES``) that explains a disagreement, or
None when nothing does. The differential tests and the fuzz script share all of it.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

OFFICIAL_DTYPES = {  # bits per element, as the official library knows them
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
NUMPY_LACKS = {"BF16", "F4", "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    tensors: dict[str, bytes] = field(default_factory=dict)
    reason: str = ""


def blob(header: Any, data: bytes = b"", *, raw: bytes | None = None, length: int | None = None) -> bytes:
    """The bytes of a safetensors file: length, header JSON (or ``raw``), data."""
    text = json.dumps(header).encode() if raw is None else raw
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def entry(dtype: str, shape: list, begin: int, end: int, **extra: Any) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end], **extra}


def _one(dtype: str, shape: list, nbytes: int, **extra: Any) -> bytes:
    return blob({"a": entry(dtype, shape, 0, nbytes, **extra)}, bytes(range(nbytes % 256)) + b"\x07" * (nbytes - nbytes % 256))


def _raw_entry(text: str, nbytes: int = 4) -> bytes:
    return blob(None, b"\x01" * nbytes, raw=text.encode())


F32 = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


CORPUS: dict[str, bytes] = {
    # accepted by both
    "plain": blob({"__metadata__": {"format": "pt"}, "a": entry("F32", [2], 0, 8), "b": entry("I64", [1], 8, 16)},
                  bytes(range(16))),
    "no-tensors": blob({}),
    "metadata-only": blob({"__metadata__": {"k": "v"}}),
    "metadata-null": _raw_entry('{"__metadata__":null,"a":' + F32 + "}"),
    "metadata-empty": _raw_entry('{"__metadata__":{},"a":' + F32 + "}"),
    "format-np": blob({"__metadata__": {"format": "np"}, "a": entry("F32", [1], 0, 4)}, b"\0\0\x80?"),
    "zero-size": blob({"a": entry("F32", [0, 3], 0, 0), "b": entry("U8", [2], 0, 2)}, b"\1\2"),
    "scalar": blob({"a": entry("F64", [], 0, 8)}, b"\0" * 7 + b"\x40"),
    "leading-whitespace": _raw_entry(' \n\t{"a":' + F32 + "}"),
    "trailing-whitespace": _raw_entry('{"a":' + F32 + "}  \r\n"),
    "unordered-entries": blob({"b": entry("U8", [1], 1, 2), "a": entry("U8", [1], 0, 1)}, b"\1\2"),
    "extra-field": _raw_entry('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"quant":{"bits":[4,{}]}}}'),
    "extra-field-nested-126": _raw_entry('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":'
                                         + _nested(125) + "}}"),
    "empty-key": blob({"": entry("U8", [1], 0, 1)}, b"\1"),
    "surrogate-pair-key": _raw_entry('{"\\ud83d\\ude00":' + F32 + "}"),
    "unicode-key": blob({"größe.ω": entry("U8", [1], 0, 1)}, b"\1"),
    "f4-even": _one("F4", [2, 4], 4),
    "f8-e8m0": _one("F8_E8M0", [3], 3),
    "f8-e4m3fnuz": _one("F8_E4M3FNUZ", [2], 2),
    "f8-e5m2fnuz": _one("F8_E5M2FNUZ", [2], 2),
    "c64": _one("C64", [2], 16),
    "u16-u32-u64": blob({"a": entry("U64", [1], 0, 8), "b": entry("U32", [1], 8, 12), "c": entry("U16", [1], 12, 14)},
                        bytes(range(14))),
    "bf16": _one("BF16", [3], 6),
    "zero-dim-big": blob({"a": entry("F32", [0, 2**62], 0, 0)}),
    # refused by both
    "metadata-list": _raw_entry('{"__metadata__":[],"a":' + F32 + "}"),
    "metadata-string": _raw_entry('{"__metadata__":"","a":' + F32 + "}"),
    "metadata-zero": _raw_entry('{"__metadata__":0,"a":' + F32 + "}"),
    "metadata-false": _raw_entry('{"__metadata__":false,"a":' + F32 + "}"),
    "metadata-number-value": _raw_entry('{"__metadata__":{"n":3},"a":' + F32 + "}"),
    "metadata-nested-value": _raw_entry('{"__metadata__":{"n":{"m":"x"}},"a":' + F32 + "}"),
    "dtype-list": _raw_entry('{"a":{"dtype":["F32"],"shape":[1],"data_offsets":[0,4]}}'),
    "dtype-object": _raw_entry('{"a":{"dtype":{"F":32},"shape":[1],"data_offsets":[0,4]}}'),
    "dtype-null": _raw_entry('{"a":{"dtype":null,"shape":[1],"data_offsets":[0,4]}}'),
    "dtype-lowercase": _one("f32", [1], 4),
    "dtype-unknown": _one("F33", [1], 4),
    "missing-offsets": _raw_entry('{"a":{"dtype":"F32","shape":[1]}}'),
    "tensor-not-object": blob({"a": 5}),
    "shape-float": _raw_entry('{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}'),
    "shape-bool": _raw_entry('{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}'),
    "shape-negative": _raw_entry('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}'),
    "shape-not-list": _raw_entry('{"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}'),
    "shape-2**64": blob({"a": entry("F32", [0, 2**64], 0, 0)}),
    "shape-overflow": blob({"a": entry("U8", [2**32, 2**32, 0], 0, 0)}),
    "shape-huge-int": _raw_entry('{"a":{"dtype":"F32","shape":[0,' + "9" * 30 + '],"data_offsets":[0,0]}}', 0),
    "offsets-three": _raw_entry('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}}'),
    "offsets-reversed": blob({"a": entry("F32", [0], 8, 0)}, b"\0" * 8),
    "offsets-negative": _raw_entry('{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}'),
    "size-disagrees": _one("F32", [3], 8),
    "hole": blob({"a": entry("U8", [1], 1, 2)}, b"\0\0"),
    "overlap": blob({"a": entry("U8", [2], 0, 2), "b": entry("U8", [2], 1, 3)}, b"\0\0\0"),
    "past-end": blob({"a": entry("U8", [8], 0, 8)}, b"\0\0"),
    "trailing-data": blob({"a": entry("U8", [1], 0, 1)}, b"\0\0"),
    "trailing-nul": _raw_entry('{"a":' + F32 + "}\0"),
    "bom": _raw_entry('\ufeff{"a":' + F32 + "}"),
    "not-utf8": blob(None, b"", raw=b'{"\xff":1}'),
    "top-list": blob([]),
    "top-string": blob("x"),
    "nan-in-extra": _raw_entry('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":NaN}}'),
    "huge-float-in-extra": _raw_entry('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1e999}}'),
    "surrogate-key": _raw_entry('{"\\ud800":' + F32 + "}"),
    "surrogate-metadata": _raw_entry('{"__metadata__":{"k":"\\udc00x"},"a":' + F32 + "}"),
    "surrogate-in-extra": _raw_entry('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":"\\ud800"}}'),
    "nested-130-in-extra": _raw_entry('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":'
                                      + _nested(130) + "}}"),
    "nested-5000-in-metadata": _raw_entry('{"__metadata__":{"k":' + _nested(5000) + '},"a":' + F32 + "}"),
    "nested-100000": blob(None, raw=('{"a":' + _nested(100_000) + "}").encode()),
    "f4-odd": _one("F4", [3], 2),
    "f4-odd-last-dim": _one("F4", [2, 2, 1], 2),
    "f6-partial-byte": _one("F6_E2M3", [3], 3),
    "length-zero": struct.pack("<Q", 0),
    "length-short": b"\x02\0\0",
    "length-past-file": blob({"a": entry("U8", [1], 0, 1)}, b"\0", length=1000),
    "length-over-limit": struct.pack("<Q", 100_000_001) + b"{}",
    "empty-header-text": blob(None, raw=b""),
    # the documented differences
    "duplicate-key": _raw_entry('{"a":' + F32 + ',"a":' + F32 + "}"),
    "duplicate-field": _raw_entry('{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}'),
    "duplicate-metadata-key": _raw_entry('{"__metadata__":{"k":"1","k":"2"},"a":' + F32 + "}"),
    "zero-dim-2**63": blob({"a": entry("F32", [0, 2**63], 0, 0)}),
    "f6-e2m3": _one("F6_E2M3", [4], 3),
    "f6-e3m2": _one("F6_E3M2", [8], 6),
}


def official(path: Path, framework: str) -> Outcome:
    """What ``safetensors.safe_open`` makes of the file: every tensor's bytes, or why not."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework=framework) as f:
            out = {k: _bytes_of(f.get_tensor(k), framework) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any refusal, whatever its type, is a refusal
        return Outcome(False, reason=f"{type(exc).__name__}: {exc}"[:300])
    return Outcome(True, out)


def _bytes_of(tensor: Any, framework: str) -> bytes:
    if framework == "numpy":
        return tensor.tobytes()
    import torch

    flat = tensor.contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def ours(path: Path) -> Outcome:
    """What mapper-core's reader makes of it: the header check, then each tensor's byte range."""
    from mapper_core.errors import CheckpointError
    from mapper_core.io.formats.safetensors_format import SafetensorsReader

    try:
        with SafetensorsReader(path) as r:
            data = path.read_bytes()
            out = {k: data[slice(*r.byte_range(k))] for k in r.specs()}
    except CheckpointError as exc:
        return Outcome(False, reason=str(exc)[:300])
    return Outcome(True, out)


def _pairs_with_duplicates(raw: bytes) -> bool:
    found = False

    def hook(pairs: list) -> dict:
        nonlocal found
        found = found or len({k for k, _ in pairs}) != len(pairs)
        return dict(pairs)
    try:
        json.loads(raw, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return False
    return found


def _header(data: bytes) -> tuple[bytes, Any]:
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0
    raw = data[8:8 + n]
    try:
        return raw, json.loads(raw)
    except (ValueError, RecursionError):
        return raw, None


def difference(data: bytes, mine: Outcome, theirs: Outcome, framework: str) -> str | None:
    """The documented difference that explains why ``mine`` and ``theirs`` disagree, or None."""
    raw, header = _header(data)
    entries = header.items() if isinstance(header, dict) else ()
    tensors = [v for k, v in entries if k != "__metadata__" and isinstance(v, dict)]
    dtypes = {v.get("dtype") for v in tensors if isinstance(v.get("dtype"), str)}
    dims = [d for v in tensors if isinstance(v.get("shape"), list) for d in v["shape"] if isinstance(d, int)]
    if not mine.accepted and theirs.accepted and _pairs_with_duplicates(raw):
        return "duplicate-key"
    if mine.accepted and not theirs.accepted:
        if dtypes & {"F6_E2M3", "F6_E3M2"} and "Dtype not understood" in theirs.reason:
            return "f6-dtype"
        if framework == "numpy" and (dtypes & NUMPY_LACKS or any(d > 2**31 for d in dims)):
            return "numpy-dtypes"
    return None


Check = Callable[[Path], Outcome]
