"""torch.distributed.checkpoint (DCP) folders: ``.metadata`` plus ``__R_N.distcp`` data files.

Specs come from ``.metadata`` alone (:mod:`.dcp_metadata`: an allowlisting unpickler, no torch,
nothing in the file runs), so ``inspect`` and ``plan`` read no tensor data. A tensor is read by
its chunks' recorded byte ranges: each chunk is a ``torch.save`` blob loaded with
``weights_only=True`` straight from a window of the data file (never read whole), or, in the
safetensors-serialised variant, a tensor of a safetensors data file. A tensor saved in several
chunks (sharded across ranks) is reassembled into one whole tensor: memory is that tensor plus
one chunk at a time. Non-tensor items (``BytesStorageMetadata``: step counts, pickled objects)
are reported by :meth:`DcpReader.non_tensors` and never unpickled.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ...errors import TORCH_EXTRA, CheckpointError, MissingExtraError, torch_available
from ...specs import TensorSpec
from .base import ReaderBase
from .dcp_metadata import METADATA_NAME, DcpChunk, DcpLayout, read_layout

SUFFIXES = (METADATA_NAME,)
_ZIP_MAGIC = b"PK\x03\x04"


def sniff_dcp(path: Path) -> bool:
    """A folder holding ``.metadata``, or the ``.metadata`` file itself."""
    return (path / METADATA_NAME).is_file() if path.is_dir() else path.name == METADATA_NAME


def open_dcp(path: Path, **_options: Any) -> "DcpReader":
    return DcpReader(path)


class FileWindow(io.RawIOBase):
    """``length`` bytes of an open file from ``start``, seekable, read on demand (never whole)."""

    def __init__(self, fd: int, start: int, length: int):
        super().__init__()
        self._fd, self._start, self._length, self._pos = fd, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._length - self._pos))
        done = 0
        while done < count:
            n = os.preadv(self._fd, [view[done:count]], self._start + self._pos + done)
            if n == 0:
                break
            done += n
        self._pos += done
        return done


class DcpReader(ReaderBase):
    """An open DCP folder. ``path`` is its ``.metadata`` (the file the source hash starts from)."""

    def __init__(self, path: Path):
        folder = path if path.is_dir() else path.parent
        self.folder = folder
        self.path = folder / METADATA_NAME
        self.layout: DcpLayout = read_layout(self.path)
        self.shards = self.layout.files  # data files, beside .metadata: hashed as the source
        self._fds: dict[str, int] = {}
        self._safetensors: dict[str, Any] = {}

    def specs(self) -> dict[str, TensorSpec]:
        return {k: t.spec for k, t in self.layout.tensors.items()}

    def non_tensors(self) -> dict[str, str]:
        """Non-tensor items, key → 'bytes': DCP pickles them; they are listed, never unpickled."""
        return {k: "bytes" for k in self.layout.non_tensors}

    def chunks(self, key: str) -> tuple[DcpChunk, ...]:
        return self._tensor(key).chunks

    def get_tensor(self, key: str) -> Any:
        """The whole tensor: its one chunk as loaded, or its chunks copied into a new tensor."""
        if not torch_available():
            raise MissingExtraError(f"{self.path}: reading DCP tensor data needs torch, which is not installed: "
                                   f"{TORCH_EXTRA}")
        import torch

        from ..torch_dtypes import NAME_TO_TORCH

        item = self._tensor(key)
        spec = item.spec
        if len(item.chunks) == 1 and item.chunks[0].sizes == spec.shape:
            return self._chunk(key, item.chunks[0], spec)
        whole = torch.empty(spec.shape, dtype=NAME_TO_TORCH[spec.dtype])
        for chunk in item.chunks:
            part = self._chunk(key, chunk, spec)
            view = whole
            for dim, (o, n) in enumerate(zip(chunk.offsets, chunk.sizes)):
                view = view.narrow(dim, o, n)
            view.copy_(part)
            del part
        return whole

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for reader in self._safetensors.values():
            reader.close()
        self._safetensors.clear()

    def _tensor(self, key: str):
        try:
            return self.layout.tensors[key]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this DCP checkpoint") from None

    def _fd(self, name: str) -> int:
        if name not in self._fds:
            try:
                self._fds[name] = os.open(self.folder / name, os.O_RDONLY)
            except OSError as exc:
                raise CheckpointError(f"{self.folder / name}: cannot read the DCP data file named in .metadata: "
                                      f"{exc.strerror or exc}") from None
        return self._fds[name]

    def _chunk(self, key: str, chunk: DcpChunk, spec: TensorSpec) -> Any:
        """One chunk as a tensor, checked against what .metadata says it is."""
        import torch

        from ..torch_dtypes import dtype_name

        where = f"{self.folder / chunk.file}: '{key}' (chunk at {list(chunk.offsets)}, bytes {chunk.start}+{chunk.length})"
        if chunk.transforms:
            raise CheckpointError(f"{where}: saved through the DCP stream extensions {list(chunk.transforms)} "
                                  "(e.g. compression), which mapper-core does not read yet; re-save the checkpoint "
                                  "without _extensions")
        fd = self._fd(chunk.file)
        if os.pread(fd, 4, 0) == _ZIP_MAGIC:  # torch.save blobs, one after the other
            size = os.fstat(fd).st_size
            if chunk.start + chunk.length > size:
                raise CheckpointError(f"{where}: the byte range runs past the end of the file ({size} bytes); "
                                      "the data file is truncated")
            try:
                tensor = torch.load(FileWindow(fd, chunk.start, chunk.length), map_location="cpu", weights_only=True)
            except Exception as exc:  # weights_only refusing code, a damaged blob: both mean unreadable here
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CheckpointError(f"{where}: not a readable torch.save blob (weights_only): {first}") from None
        else:
            tensor = self._safetensors_chunk(chunk, key, where)
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where}: holds a {type(tensor).__name__}, not a tensor")
        got = (dtype_name(tensor.dtype, key, str(self.path)), tuple(tensor.shape))
        if got != (spec.dtype, chunk.sizes):
            raise CheckpointError(f"{where}: holds {got[0]} {list(got[1])} but .metadata says {spec.dtype} "
                                  f"{list(chunk.sizes)}; the folder's files do not belong together")
        return tensor

    def _safetensors_chunk(self, chunk: DcpChunk, key: str, where: str) -> Any:
        """The safetensors-serialised variant: each data file is a safetensors file keyed by fqn."""
        from .safetensors_format import open_safetensors, sniff_safetensors

        path = self.folder / chunk.file
        if chunk.file not in self._safetensors:
            if not sniff_safetensors(path):
                raise CheckpointError(f"{where}: neither a torch.save blob nor a safetensors data file; "
                                      "the data file is damaged or not DCP's")
            self._safetensors[chunk.file] = open_safetensors(path)
        reader = self._safetensors[chunk.file]
        if key not in reader.specs():
            raise CheckpointError(f"{where}: the safetensors data file has no tensor '{key}'")
        return reader.get_tensor(key)
