"""A GGUF file's header (key-value metadata and tensor infos), read and checked before anything else.

``gguf.GGUFReader`` makes a numpy view and Python objects for every element of every metadata
array (a 4 MB file of 500,000 empty strings took 847 MB and 24 s), trusts every count and
length it reads, and reports damage as numpy's own exceptions. This reader walks the same
layout (GGUF versions 2 and 3, either byte order) with ``struct`` over a memory map: every
count and length is checked against the bytes left before it is used, arrays longer than
:data:`MAX_ARRAY` values are stepped over (not copied), and each problem names the file, the
key or tensor, the byte offset and what to do. What the header costs in memory (its tensor
infos and keys) is charged to the same expansion budget as the other readers'.
"""
from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from mapper_core.errors import CheckpointError
from mapper_core.io.formats.torch_archive import ExpansionBudget
from mapper_core.specs import MAX_DIM, shape_numel

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # what gguf.GGUFReader reads; version 1 (2023) had 32-bit counts
DEFAULT_ALIGNMENT = 32
MAX_ARRAY = 1024  # longer arrays (a tokenizer's vocabulary) are summarised, not copied into metadata
MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp's gguf.cpp refuses a tensor info with more (gguf's Python reader does not)
MAX_NESTING = 8  # arrays of arrays deeper than this are refused (llama.cpp reads none at all)
# Python memory one tensor info or key costs here (measured ~0.5 KB / ~0.25 KB); charged to the budget
TENSOR_COST, KEY_COST = 1024, 512
SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q", GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}
TYPE_NAMES = ", ".join(f"{t.value} {t.name}" for t in GGUFValueType)
FIX = "the file is damaged or incomplete: download or convert it again"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF order: fastest-varying first
    qtype: GGMLQuantizationType
    start: int  # absolute offset of its data in the file
    nbytes: int


@dataclass
class GgufHeader:
    byte_order: str  # '<' or '>'
    version: int
    alignment: int
    data_offset: int
    metadata: dict[str, str]  # GGUF.* container fields left out; values as text
    tensors: list[TensorInfo]


class _Cursor:
    def __init__(self, path: Path, buf: Any, size: int, order: str):
        self.path, self.buf, self.size, self.order, self.pos = path, buf, size, order, 0

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {what}; {FIX}")

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(f"truncated GGUF file ({self.size:,} bytes): {what} (from byte {self.pos:,}) would end "
                            f"at byte {self.pos + n:,}, past the end of the file")

    def scalar(self, code: str, what: str) -> Any:
        fmt = self.order + code
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def count(self, what: str, each: int) -> int:
        """A 64-bit count of things at least ``each`` bytes long, refused when the rest of the file
        cannot hold that many."""
        at = self.pos
        n = self.scalar("Q", what)
        room = (self.size - self.pos) // each
        if n > room:
            raise self.fail(f"{what} at byte {at:,} is {n:,}, but the {self.size - self.pos:,} bytes left in the "
                            f"file hold at most {room:,} (each takes at least {each} bytes)")
        return n

    def raw_string(self, what: str) -> bytes:
        at = self.pos
        n = self.scalar("Q", f"the length of {what}")
        if n > self.size - self.pos:
            raise self.fail(f"{what} at byte {at:,} says it is {n:,} bytes long, past the end of the "
                            f"{self.size:,}-byte file")
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def text(self, what: str, strict: bool = True) -> str:
        data = self.raw_string(what)
        if not strict:  # a value: gguf itself decodes values only when asked
            return data.decode("utf-8", "backslashreplace")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8 text ({data[:40]!r})") from None

    def skip_strings(self, n: int, what: str) -> None:
        """Step over ``n`` strings without keeping them."""
        fmt = self.order + "Q"
        buf, size, pos = self.buf, self.size, self.pos
        for i in range(n):
            if size - pos < 8:
                self.pos = pos
                self.need(8, f"the length of string {i:,} of {what}")
            (length,) = struct.unpack_from(fmt, buf, pos)
            pos += 8
            if length > size - pos:
                self.pos = pos - 8
                raise self.fail(f"string {i:,} of {what} at byte {pos - 8:,} says it is {length:,} bytes long, "
                                f"past the end of the {size:,}-byte file")
            pos += length
        self.pos = pos


def _value_type(cur: _Cursor, where: str) -> GGUFValueType:
    at = cur.pos
    raw = cur.scalar("I", f"the value type of {where}")
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise cur.fail(f"{where} has value type {raw} at byte {at:,}, which is not a GGUF type ({TYPE_NAMES})") from None


def _min_size(vtype: GGUFValueType) -> int:
    if vtype == GGUFValueType.STRING:
        return 8
    if vtype == GGUFValueType.ARRAY:
        return 12
    return struct.calcsize(SCALARS[vtype])


def _value(cur: _Cursor, vtype: GGUFValueType, where: str, depth: int = 0) -> tuple[Any, int, bool]:
    """(value, how many values it holds, whether it was summarised instead of read)."""
    if vtype == GGUFValueType.STRING:
        return cur.text(f"the string value of {where}", strict=False), 1, False
    if vtype != GGUFValueType.ARRAY:
        return cur.scalar(SCALARS[vtype], where), 1, False
    if depth >= MAX_NESTING:
        raise cur.fail(f"{where} nests arrays more than {MAX_NESTING} deep")
    item = _value_type(cur, f"the items of {where}")
    n = cur.count(f"the array length of {where}", _min_size(item))
    if n > MAX_ARRAY and item == GGUFValueType.STRING:
        cur.skip_strings(n, where)
        return f"[array of {n} string; not copied]", n, True
    if n > MAX_ARRAY and item != GGUFValueType.ARRAY:
        cur.need(n * _min_size(item), where)
        cur.pos += n * _min_size(item)
        return f"[array of {n} {item.name.lower()}; not copied]", n, True
    values, total, summarised = [], 0, False
    for i in range(n):
        value, held, short = _value(cur, item, f"{where}[{i}]", depth + 1)
        total += held
        summarised = summarised or short
        if not summarised and total <= MAX_ARRAY:
            values.append(value)
        else:
            summarised = True
    if summarised:
        return f"[array of {n} {item.name.lower()}; not copied]", total, True
    return values, total, False


def _text(vtype: GGUFValueType, value: Any, summarised: bool) -> str:
    if vtype == GGUFValueType.STRING or summarised:
        return value
    return json.dumps(value, separators=(",", ":"))


def _tensor_info(cur: _Cursor, index: int) -> tuple[str, tuple[int, ...], int, int]:
    name = cur.text(f"the name of tensor {index:,}")
    where = f"tensor '{name}'"
    at = cur.pos
    n_dims = cur.scalar("I", f"the dimension count of {where}")
    if n_dims > MAX_DIMS:
        raise cur.fail(f"{where} has {n_dims:,} dimensions (byte {at:,}); a GGUF tensor has at most {MAX_DIMS} "
                       "(GGML_MAX_DIMS, what llama.cpp reads)")
    cur.need(8 * n_dims, f"the {n_dims} dimensions of {where}")
    dims = struct.unpack_from(f"{cur.order}{n_dims}Q", cur.buf, cur.pos)
    cur.pos += 8 * n_dims
    raw = cur.scalar("I", f"the type of {where}")
    offset = cur.scalar("Q", f"the data offset of {where}")
    return name, dims, raw, offset


def _check_tensor(cur: _Cursor, name: str, dims: tuple[int, ...], raw: int, offset: int,
                  data_offset: int) -> TensorInfo:
    where = f"{cur.path}: tensor '{name}'"
    try:
        qtype = GGMLQuantizationType(raw)
        block, type_size = GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        raise CheckpointError(f"{where} has tensor type {raw}, which gguf {gguf_version()} does not know; the "
                              "file is damaged or needs a newer gguf (pip install -U gguf)") from None
    shape = list(reversed(dims))
    for i, d in enumerate(shape):
        if d > MAX_DIM:
            raise CheckpointError(f"{where}: {qtype.name} {shape}: dimension {i} is {d:,}, past what GGML's int64 "
                                  f"holds ({MAX_DIM:,}); {FIX}")
    numel = shape_numel(dims, MAX_DIM)
    nbytes = None if numel is None else numel // block * type_size
    if nbytes is None or nbytes > MAX_DIM:
        what = "elements" if numel is None else "bytes"
        raise CheckpointError(f"{where}: {qtype.name} {shape} has more {what} than fit 63 bits (GGML counts both "
                              f"in int64, at most {MAX_DIM:,}); {FIX}")
    if block > 1 and (not dims or dims[0] % block):
        raise CheckpointError(f"{where}: its rows of {dims[0] if dims else 1:,} values are not whole {qtype.name} "
                              f"blocks of {block}; {FIX}")
    start = data_offset + offset
    if start + nbytes > cur.size:
        raise CheckpointError(f"{where}: {qtype.name} {shape} is {nbytes:,} bytes at offset "
                              f"{offset:,} of the data section (byte {start:,}), past the end of the {cur.size:,}-byte "
                              f"file; {FIX}")
    return TensorInfo(name, tuple(dims), qtype, start, nbytes)


def read_header(path: Path, budget: ExpansionBudget) -> GgufHeader:
    """Read and check ``path``'s header; the tensors' data is not touched."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size < 24:
            raise CheckpointError(f"{path}: truncated GGUF file ({size} bytes; the header needs 24); {FIX}")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _read(path, buf, size, budget)


def _read(path: Path, buf: Any, size: int, budget: ExpansionBudget) -> GgufHeader:
    if buf[:4] != MAGIC:
        raise CheckpointError(f"{path}: not a GGUF file (it does not start with b'GGUF' but {bytes(buf[:4])!r})")
    (version,) = struct.unpack_from("<I", buf, 4)
    order = "<"
    if version & 0xFFFF == 0:  # written on a machine of the other byte order
        order = ">"
        (version,) = struct.unpack_from(">I", buf, 4)
    if version not in VERSIONS:
        raise CheckpointError(f"{path}: GGUF version {version} is not one gguf {gguf_version()} reads "
                              f"({', '.join(map(str, VERSIONS))}): the file is damaged, or comes from an older or newer "
                              "llama.cpp; convert the model again with a current llama.cpp, or update gguf "
                              "(pip install -U gguf)")
    cur = _Cursor(path, buf, size, order)
    cur.pos = 8
    n_tensors = cur.count("the tensor count", 24)  # a name length, dimension count, type and offset
    n_keys = cur.count("the metadata key count", 13)  # a key length, a type and one byte of value
    budget.spend(f"its header ({n_tensors:,} tensors, {n_keys:,} metadata keys)",
                 n_tensors * TENSOR_COST + n_keys * KEY_COST)
    metadata: dict[str, str] = {}
    alignment = DEFAULT_ALIGNMENT
    for i in range(n_keys):
        key = cur.text(f"metadata key {i:,}")
        if key in metadata:
            raise cur.fail(f"metadata key '{key}' appears twice")
        where = f"metadata key '{key}'"
        vtype = _value_type(cur, where)
        value, _, summarised = _value(cur, vtype, where)
        if key == "general.alignment":
            if vtype != GGUFValueType.UINT32 or not value or value & (value - 1):
                raise cur.fail(f"general.alignment is {value!r} ({vtype.name}); it must be a UINT32 power of two")
            alignment = value
        metadata[key] = _text(vtype, value, summarised)
    infos = []
    for i in range(n_tensors):
        infos.append(_tensor_info(cur, i))
    data_offset = -(-cur.pos // alignment) * alignment
    tensors, seen = [], set()
    for name, dims, raw, offset in infos:
        if name in seen:
            raise cur.fail(f"two tensors are named '{name}'")
        seen.add(name)
        tensors.append(_check_tensor(cur, name, dims, raw, offset, data_offset))
    return GgufHeader(order, version, alignment, data_offset, metadata, tensors)


def gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")
