"""A DCP checkpoint's ``.metadata``, read without running code and without torch.

``torch.distributed.checkpoint`` pickles its :class:`Metadata` dataclass and reads it back with
a plain ``pickle.load``, so opening an untrusted DCP folder can run code. Here the pickle is
read by an unpickler that knows a short allowlist of globals: DCP's metadata dataclasses,
``torch.Size``, torch dtypes and layouts, ``pathlib`` paths and plain containers. Every one of
them resolves to a stand-in defined here (torch is never imported, no torch class is built), so
``mapper inspect`` and ``mapper plan`` on a DCP folder work on the header-only install. Any
other global (``os.system``, ``builtins.eval``, a ``__reduce__`` payload) is refused with
:class:`~mapper_core.errors.UnsafeCheckpointError` naming it.

The result is :class:`DcpLayout`: every tensor's dtype, shape and chunks (offsets, sizes, and
where each chunk's bytes are: file, byte offset, length), and the non-tensor items. A tensor of a
dtype safetensors cannot store (``complex128``) is listed under torch's name
(:data:`~mapper_core.specs.OTHER_DTYPE_BITS`); only reading its bytes is refused, by the reader.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from itertools import repeat
from math import prod
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, UnsafeCheckpointError
from ...gc_pause import pauses_gc
from ...specs import MAX_DIM, OTHER_DTYPE_BITS, TensorSpec, shape_numel, shown_shape
from .dcp_bulk import DcpChunk, chunks_fit, is_ints, overlap, safe_name, storage_in_bulk
from .pickle_steps import SIZE_FLOOR, StepBudgetError, count_steps
from .spec_json import TORCH_NAMES
from .whole_file import file_kind, link_note, read_whole

__all__ = ["DcpChunk", "DcpLayout", "DcpTensor", "METADATA_NAME", "file_kind", "link_note", "read_layout"]

METADATA_NAME = ".metadata"
# DCP pickles about 150 bytes per saved chunk, and reading them takes about 13x the file's size in
# memory: 1 GiB is some 7 million chunks (a 405B model's, 7,325 tensors in 58,600 chunks, is 9 MB)
MAX_METADATA_BYTES = 1 << 30

_DTYPES = TORCH_NAMES  # torch dtype attribute → safetensors name (the spelling TensorSpec uses)
_STORED = tuple({v: k for k, v in reversed(_DTYPES.items())}.values())[::-1]  # one torch name per dtype
_MD = "torch.distributed.checkpoint.metadata"
_FS = "torch.distributed.checkpoint.filesystem"


class _Record:
    """A stand-in for one of DCP's dataclasses: the unpickler fills its ``__dict__``, nothing runs."""

    def __init__(self, *args: Any) -> None:
        self.__dict__["_args"] = args


class _Properties(_Record):
    """TensorProperties pickles a tuple (dtype, layout, requires_grad, memory format, pin_memory)."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


def _field(record: Any, name: str) -> Any:
    """A field of a stand-in, read from its ``__dict__`` (a pickle cannot shadow a method this way)."""
    return vars(record).get(name) if isinstance(record, _Record) else None


def _record(name: str) -> type:
    return type(name, (_Properties if name == "TensorProperties" else _Record,), {})


@dataclass(frozen=True)
class _Dtype:
    name: str  # the safetensors name, or "?torch.NAME" for a dtype safetensors cannot hold


def _layout(name: Any) -> str:
    return str(name)


def _enum_value(value: Any) -> Any:
    return value


def _path(*parts: Any) -> str:
    return "/".join(str(p) for p in parts)


def _ordered_dict(*args: Any) -> dict:
    return dict(*args)


_CLASSES = {name: _record(name) for name in (
    "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
    "StorageMeta", "MetadataIndex", "_StorageInfo")}
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(_MD, n): c for n, c in _CLASSES.items() if n != "_StorageInfo"},
    (_FS, "_StorageInfo"): _CLASSES["_StorageInfo"],
    (_MD, "_MEM_FORMAT_ENCODING"): _enum_value,
    ("torch", "Size"): tuple,  # integers are checked where sizes are used
    ("torch.serialization", "_get_layout"): _layout,
    ("pathlib", "PosixPath"): _path, ("pathlib", "PurePosixPath"): _path,
    ("pathlib", "WindowsPath"): _path, ("pathlib", "PureWindowsPath"): _path,
    ("pathlib", "Path"): _path,
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
}


class _AllowlistUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch" and name in _DTYPES:
            return _Dtype(_DTYPES[name])
        if module == "torch" and name.startswith(("float", "int", "uint", "complex", "bool", "qint", "quint", "bits")):
            return _Dtype(f"?torch.{name}")
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id (tensor storage)")


class _Refused(pickle.UnpicklingError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class DcpTensor:
    spec: TensorSpec
    chunks: tuple[DcpChunk, ...]


@dataclass(frozen=True)
class DcpLayout:
    """What ``.metadata`` says: tensors (in saved order), non-tensor items, and the DCP version."""

    tensors: dict[str, DcpTensor]
    non_tensors: dict[str, DcpChunk | None]
    version: str | None
    files: tuple[str, ...]  # the data files the items live in, sorted


@pauses_gc  # plain data in bulk (130,000 chunks: a third of the time went to the collector); the size cap bounds it
def read_layout(path: Path, allow_large: bool = False) -> DcpLayout:
    """The layout of the DCP checkpoint whose ``.metadata`` is ``path``; nothing in it runs.

    ``path`` must be a regular file of at most :data:`MAX_METADATA_BYTES` (unless ``allow_large``):
    a device, a FIFO or a runaway file is refused before anything is read."""
    data = _metadata_bytes(path, allow_large)
    limit = max(SIZE_FLOOR, len(data))  # every opcode is a byte or more: a tree of objects stays within it
    try:
        count_steps(io.BytesIO(data), None, size_limit=limit)  # before anything hashes a shared object
    except StepBudgetError as exc:
        raise CheckpointError(
            f"{path}: refused: the DCP metadata {exc}. torch.distributed.checkpoint never writes this (without "
            f"sharing, an object has at most as many parts as the pickle has opcodes, and {limit:,} is the larger of "
            f"{SIZE_FLOOR:,} and the file's size): the file is damaged or made to hang what reads it") from None
    try:
        top = _AllowlistUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused: the DCP metadata needs the global '{exc.name}', which is not one of DCP's metadata "
            "classes, and unpickling it could run code. Only DCP's own .metadata files are read; re-save the "
            "checkpoint with torch.distributed.checkpoint.save where it came from"
        ) from None
    except Exception as exc:  # truncated, not a pickle, a stand-in given the wrong arguments
        raise CheckpointError(f"{path}: not a readable DCP .metadata (damaged pickle?): {exc}") from None
    return _layout_of(top, path)


def _metadata_bytes(path: Path, allow_large: bool) -> bytes:
    """The bytes of ``.metadata``, read only from a regular file and never past its size or the cap."""
    return read_whole(
        path, None if allow_large else MAX_METADATA_BYTES,
        what="a DCP .metadata is the file torch.distributed.checkpoint.save writes beside its data files. Give "
             "the checkpoint folder as it was saved",
        too_big=lambda size: (
            f"{size:,} bytes is more than a DCP .metadata plausibly is (at most {MAX_METADATA_BYTES:,}: "
            "about 7 million saved chunks at 150 bytes each), and reading it would take some 13x that in "
            "memory; is this the right file? If it is, and you have the memory, pass --allow-expansion "
            "(Python: allow_expansion=True)"),
        grew="is a save still writing it? Read the checkpoint once the save has finished")


def _layout_of(top: Any, path: Path) -> DcpLayout:
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: not a DCP .metadata as torch.distributed.checkpoint writes it: {what}")

    if not isinstance(top, _CLASSES["Metadata"]):
        raise bad(f"the pickle holds a {type(top).__name__}, not a Metadata")
    items = _field(top, "state_dict_metadata")
    storage = _field(top, "storage_data")
    if not isinstance(items, dict):
        raise bad("no state_dict_metadata dict")
    if not isinstance(storage, dict):
        raise bad("no storage_data dict (only the filesystem storage layout is read)")
    index_type, info_type = _CLASSES["MetadataIndex"], _CLASSES["_StorageInfo"]
    where = storage_in_bulk(storage, index_type, info_type)
    if where is None:  # an entry the bulk checks refused (named here), or stream transforms
        where = _storage_checked(storage, index_type, info_type, bad)
    tensors: dict[str, DcpTensor] = {}
    non_tensors: dict[str, DcpChunk | None] = {}
    for fqn, item in items.items():
        if not isinstance(fqn, str):
            raise bad(f"a key {fqn!r} that is not a string")
        if isinstance(item, _CLASSES["BytesStorageMetadata"]):
            non_tensors[fqn] = where.get((fqn, None))
            continue
        if not isinstance(item, _CLASSES["TensorStorageMetadata"]):
            raise bad(f"'{fqn}' is a {type(item).__name__}, not tensor or bytes storage")
        tensors[fqn] = _tensor(fqn, item, where, bad, path)
    files = sorted({c.file for t in tensors.values() for c in t.chunks} |
                   {c.file for c in non_tensors.values() if c is not None})
    version = _field(top, "version")
    return DcpLayout(tensors, non_tensors, version if isinstance(version, str) else None, tuple(files))


def _storage_checked(storage: dict, index_type: type, info_type: type, bad) -> dict[tuple, DcpChunk]:
    """``storage_data`` as (fqn, offset) → :class:`DcpChunk` (byte range), each entry checked in turn."""
    where: dict[tuple[str, tuple | None], DcpChunk] = {}
    safe_names: set[str] = set()
    for index, info in storage.items():
        if type(index) is not index_type or type(info) is not info_type:
            raise bad("a storage_data entry that is not MetadataIndex → _StorageInfo")
        got, at = index.__dict__, info.__dict__
        fqn, offset = got.get("fqn"), got.get("offset")
        rel, start, length = at.get("relative_path"), at.get("offset"), at.get("length")
        if type(fqn) is not str or not is_ints(offset, allow_none=True):
            raise bad(f"a storage index with fqn {fqn!r} and offset {offset!r}")
        if not isinstance(rel, str) or rel not in safe_names:  # a list is unhashable: checked first
            if not isinstance(rel, str) or not safe_name(rel):
                raise bad(f"'{fqn}': storage in {rel!r}; a data file must be a plain name in the checkpoint folder")
            safe_names.add(rel)
        if type(start) is not int or type(length) is not int or start < 0 or length < 0:
            raise bad(f"'{fqn}': storage at {rel!r} offset {start!r} length {length!r}; a data file must be a plain "
                      "name in the checkpoint folder and the range non-negative integers")
        transforms = at.get("transform_descriptors") or ()
        if transforms and (not isinstance(transforms, (list, tuple)) or not all(isinstance(t, str) for t in transforms)):
            raise bad(f"'{fqn}': transform_descriptors {transforms!r}")
        where[(fqn, offset)] = DcpChunk((), (), rel, start, length, tuple(transforms))
    return where


def _given(value: Any) -> str:
    """A size or offsets from .metadata for a message, bounded: a tuple of ints by :func:`shown_shape`,
    anything else by the start of its repr."""
    if is_ints(value):
        return shown_shape(value)
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4,300 digits inside
        return f"a {type(value).__name__} holding a number of thousands of digits"
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text):,} characters)"


def _tensor(fqn: str, item: _Record, where: dict, bad, path: Path) -> DcpTensor:
    props, size, chunks = _field(item, "properties"), _field(item, "size"), _field(item, "chunks")
    state = vars(props).get("_state") if isinstance(props, _CLASSES["TensorProperties"]) else None
    dtype = state[0] if isinstance(state, tuple) and state else None
    if not isinstance(dtype, _Dtype):
        raise bad(f"'{fqn}': no dtype in its properties")
    name = dtype.name
    if name.startswith("?"):  # listed under torch's name (the key can be skipped); reading it is refused
        name = name[len("?torch."):]
        if name not in OTHER_DTYPE_BITS:  # a dtype this version does not know the size of
            raise CheckpointError(f"{path}: tensor '{fqn}' has dtype torch.{name}, which mapper-core does not know "
                                  f"(safetensors stores {', '.join(_STORED)}); convert it with torch before mapping")
    if not is_ints(size) or any(s < 0 for s in size):
        raise bad(f"'{fqn}': size {_given(size)}")
    if shape_numel(size, MAX_DIM) is None:  # multiplied only until it passes: a size of 20,000 huge dims is cheap
        raise bad(f"'{fqn}': size {shown_shape(size)} has more elements than fit 2**63-1, more than torch can hold")
    if not isinstance(chunks, list):
        raise bad(f"'{fqn}': chunks {chunks!r}")
    spec = TensorSpec(name, tuple(size))
    # every chunk's offsets and sizes at once (C loops over all of them), then the one at fault is named
    chunk_type = _CLASSES["ChunkStorageMetadata"]
    fields = (list(map(vars, chunks)) if not set(map(type, chunks)) - {chunk_type}
              else [c.__dict__ if type(c) is chunk_type else {} for c in chunks])
    offs, sizs = list(map(dict.get, fields, repeat("offsets"))), list(map(dict.get, fields, repeat("sizes")))
    if not chunks_fit(offs, sizs, size):
        for offsets, sizes in zip(offs, sizs):
            if not chunks_fit([offsets], [sizes], size):
                raise bad(f"'{fqn}': a chunk at {_given(offsets)} of {_given(sizes)} does not fit its size "
                          f"{shown_shape(size)}")
        raise bad(f"'{fqn}': its chunks do not fit its size {shown_shape(size)}")  # not reached: the same check, each
    places = list(map(where.get, zip(repeat(fqn), offs)))
    if not all(places):  # a DcpChunk is a non-empty tuple
        raise bad(f"'{fqn}': the chunk at {shown_shape(offs[places.index(None)])} has no storage_data entry")
    found = [tuple.__new__(DcpChunk, (o, n) + p[2:]) for o, n, p in zip(offs, sizs, places)]
    covered = sum(map(prod, sizs))
    if covered != spec.numel or overlap(found):
        raise bad(f"'{fqn}': its chunks hold {covered} values but its size {shown_shape(size)} needs {spec.numel} "
                  "(chunks overlap or leave a hole)")
    return DcpTensor(spec, tuple(found))
