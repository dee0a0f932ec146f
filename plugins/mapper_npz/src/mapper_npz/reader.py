"""Read an ``.npz`` from its ``.npy`` headers; arrays only when asked for, never with pickle.

An ``.npz`` is a zip archive with one ``NAME.npy`` member per array. ``specs()`` reads each
member's ``.npy`` header (magic, version, a short Python-literal dict parsed by numpy without
evaluating code) and nothing of the data; ``get_tensor`` reads one member. Every header is
checked against the member's size in the zip directory, so a header cannot claim more data
than the archive holds. The archive is read by position (:mod:`.positional`), so processes forked
with the reader open (``--workers``) each read on their own.
"""
from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy

from mapper_core.errors import CheckpointError
from mapper_core.io.formats.torch_archive import ExpansionBudget, expansion_limit
from mapper_core.plugins import ReaderBase
from mapper_core.specs import MAX_DIM, TensorSpec, shape_numel, shown_shape

from .positional import PositionalFile

# numpy dtype (kind, itemsize) → safetensors dtype name. Byte order is the reader's business:
# big-endian arrays are returned in native order.
DTYPES: dict[tuple[str, int], str] = {
    ("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16",
    ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16", ("i", 1): "I8",
    ("u", 8): "U64", ("u", 4): "U32", ("u", 2): "U16", ("u", 1): "U8",
    ("b", 1): "BOOL",
}
ZIP_MAGIC = b"PK\x03\x04"
# NPY_MAXDIMS, the most dimensions a numpy array has: 32 before numpy 2.0, 64 since (its release notes)
MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
MAX_HEADER = 1 << 20  # numpy's own headers are < 64 KiB; anything larger is not a .npy header
CHUNK = 8 << 20  # an array is read in pieces this large: its own buffer is the only copy of it


def _read_into(f: Any, buffer: bytearray) -> int:
    """Fill ``buffer`` from the member ``f`` a piece at a time (``readinto`` on a zip member reads the
    whole length into a second buffer first); returns the bytes read, fewer when the member ends."""
    view, got = memoryview(buffer), 0
    while got < len(buffer):
        piece = f.read(min(CHUNK, len(buffer) - got))
        if not piece:
            break
        view[got:got + len(piece)] = piece
        got += len(piece)
    return got


def _header_problem(exc: Exception) -> str:
    """numpy's reason, without the repr of Python's syntax tree it sometimes carries."""
    text = str(exc)
    if text.startswith("malformed node or string"):  # ast.literal_eval met a call, a name, an operator...
        return ("the header is not the dict of plain values numpy writes (it holds an expression, such as a "
                "call; nothing in it was run)")
    return text


def sniff_npz(path: Path) -> bool:
    """A zip archive whose members are all ``.npy`` files (reads the magic and the zip directory)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != ZIP_MAGIC:
                return False
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def dtype_name(dtype: np.dtype) -> str | None:
    """The safetensors name of a numpy dtype, or None when safetensors has none."""
    return DTYPES.get((dtype.kind, dtype.itemsize)) if dtype.fields is None else None


class NpzReader(ReaderBase):
    """An open ``.npz``: specs from headers, arrays on demand (numpy, native byte order, C order)."""

    def __init__(self, path: str | Path, allow_expansion: bool = False):
        self.path = Path(path)
        self._file = None
        try:
            self._file = PositionalFile(self.path)  # forked workers share it: no shared offset
            self._zip = zipfile.ZipFile(self._file)
            size = self._file.seek(0, 2)
        except (OSError, zipfile.BadZipFile) as exc:
            if self._file is not None:
                self._file.close()
            raise CheckpointError(f"{self.path}: not a readable .npz (zip) archive: {exc}") from None
        self._size = size
        self._budget = ExpansionBudget(self.path, size, None if allow_expansion else expansion_limit(size))
        self._charged: set[str] = set()
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                raise CheckpointError(f"{self.path}: member '{info.filename}' is not a .npy array; an .npz holds only "
                                      "NAME.npy members (is this another kind of zip?)")
            self._members[info.filename[: -len(".npy")]] = info
        self._specs: dict[str, TensorSpec] | None = None

    def _header(self, key: str, f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
        where = f"{self.path}: array '{key}'"
        try:
            version = npy.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npy.read_array_header_1_0(f, max_header_size=MAX_HEADER)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npy.read_array_header_2_0(f, max_header_size=MAX_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise CheckpointError(f"{where}: damaged .npy header: {_header_problem(exc)}") from None
        if any(n < 0 for n in shape):
            raise CheckpointError(f"{where}: the header gives the shape {shown_shape(shape)}, with a negative "
                                  "dimension; the archive is damaged")
        if len(shape) > MAX_DIMS:  # numpy.load refuses it too (when it reshapes, after reading the data)
            raise CheckpointError(f"{where}: the header gives the shape {shown_shape(shape)}; a numpy array has "
                                  f"at most {MAX_DIMS} dimensions, so no numpy wrote it: the archive is damaged")
        if dtype.hasobject:
            raise CheckpointError(f"{where} holds Python objects (dtype {dtype}), which only pickle can load; "
                                  "mapper-npz never unpickles. Save plain numeric arrays")
        if dtype_name(dtype) is None:
            raise CheckpointError(f"{where} has dtype {dtype}, which safetensors cannot hold; cast it to a "
                                  "numeric type (e.g. float32) before saving")
        numel = shape_numel(shape, MAX_DIM)  # stops at the first product past what numpy can index
        need = None if numel is None else numel * dtype.itemsize
        data = self._members[key].file_size - f.tell()
        if need != data:
            claim = f"{need:,} bytes" if need is not None else "more than 2**63-1 elements, more than numpy can hold"
            raise CheckpointError(f"{where}: the header says {shown_shape(shape)} of {dtype} ({claim}) "
                                  f"but the member holds {data:,} bytes of data; the archive is damaged")
        return tuple(int(n) for n in shape), bool(fortran), dtype

    def specs(self) -> dict[str, TensorSpec]:
        if self._specs is None:
            specs = {}
            for key in self._members:
                with self._open(key) as f:  # only the header is read (and inflated)
                    shape, _, dtype = self._header(key, f)
                specs[key] = TensorSpec(dtype_name(dtype), shape)  # type: ignore[arg-type]
            self._specs = specs
        return dict(self._specs)

    def get_tensor(self, key: str) -> np.ndarray:
        if key not in self._members:
            raise CheckpointError(f"{self.path}: no array '{key}' in this archive")
        self._charge(key)
        with self._open(key) as f:
            shape, fortran, dtype = self._header(key, f)
            count = math.prod(shape)
            buffer = bytearray(count * dtype.itemsize)  # writable: torch.from_numpy takes it without a copy
            try:
                got = _read_into(f, buffer)
            except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise CheckpointError(f"{self.path}: array '{key}' cannot be read: {exc}") from None
        if got != len(buffer):
            raise CheckpointError(f"{self.path}: array '{key}' is truncated ({got} of {len(buffer)} bytes)")
        array = np.frombuffer(buffer, dtype=dtype, count=count)
        array = array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)
        native = dtype.newbyteorder("=")
        if fortran or native != dtype:
            return np.array(array, dtype=native, order="C")
        return array

    def _open(self, key: str) -> Any:
        """The member's stream; zipfile checks its local header against the directory entry."""
        try:
            return self._zip.open(self._members[key])
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, zlib.error) as exc:
            raise CheckpointError(f"{self.path}: array '{key}' cannot be read: the zip archive is damaged "
                                  f"({exc}); save the arrays again") from None

    def _charge(self, key: str) -> None:
        """Charge what the member declares past the bytes the file can hold for it (a compressed
        member's inflation; a size claimed past the file's end), once, before anything is allocated.
        The member's declared size then bounds what is read: the buffer is that long, and zipfile
        inflates no more than it (a stream that holds more fails its CRC)."""
        info = self._members[key]
        held = min(info.compress_size, self._size)
        if key not in self._charged and info.file_size > held:
            self._charged.add(key)
            how = "compressed" if info.compress_type != zipfile.ZIP_STORED else "stored"
            self._budget.spend(f"array '{key}' ({how}: {held:,} bytes in the file, {info.file_size:,} declared)",
                               info.file_size - held)

    def close(self) -> None:
        self._zip.close()
        self._file.close()
