"""torch.distributed.checkpoint (DCP) folders: ``.metadata`` plus ``__R_N.distcp`` data files.

Specs come from ``.metadata`` alone (:mod:`.dcp_metadata`: an allowlisting unpickler, no torch,
nothing in the file runs), so ``inspect`` and ``plan`` read no tensor data. A tensor is read by
its chunks' recorded byte ranges: each chunk is a ``torch.save`` blob, checked as a ``.pt``
file is before torch reads it and then streamed into its place (:mod:`.dcp_blob`), or, in the
safetensors-serialised variant, a tensor of a safetensors data file. A tensor saved in several
chunks (sharded across ranks) is reassembled into one whole tensor: memory is that tensor plus a
bounded buffer. Non-tensor items (``BytesStorageMetadata``: step counts, pickled objects)
are reported by :meth:`DcpReader.non_tensors` and never unpickled. A tensor of a dtype safetensors
cannot store (``complex128``) is in ``specs()`` under torch's name and in ``unstorable_keys``;
``get_tensor`` refuses it naming the key, so rules that skip it convert the rest (as a torch file's).

Data files are read where they are, symlinks resolved; as for an index's shards, a data file (or the
``.metadata``) whose real path is outside the folder is refused unless the caller allows it
(``allow_outside_shards=True``, CLI ``--allow-outside-shards``).
"""
from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Any

from ...errors import TORCH_EXTRA, CheckpointError, CheckpointWarning, MissingExtraError, torch_available
from ...specs import OTHER_DTYPE_BITS, TensorSpec, shown_shape
from ...text import listed
from .base import FileRange, ReaderBase
from .dcp_blob import FileWindow, read_blob_into, stream_into
from .dcp_metadata import METADATA_NAME, DcpChunk, DcpLayout, file_kind, link_note, read_layout
from .torch_archive import ExpansionBudget, expansion_limit
from .torch_checks import unstorable_refusal

__all__ = ["DcpReader", "FileWindow", "open_dcp", "sniff_dcp"]

SUFFIXES = (METADATA_NAME,)
_ZIP_MAGIC = b"PK\x03\x04"


def sniff_dcp(path: Path) -> bool:
    """A folder holding ``.metadata`` (anything but a folder: the reader refuses a FIFO or a device
    by name), or the ``.metadata`` file itself."""
    if not path.is_dir():
        return path.name == METADATA_NAME
    meta = path / METADATA_NAME
    return os.path.lexists(meta) and not meta.is_dir()


def open_dcp(path: Path, allow_expansion: bool = False, allow_outside_shards: bool = False,
             **_options: Any) -> "DcpReader":
    return DcpReader(path, allow_expansion=allow_expansion, allow_outside_shards=allow_outside_shards)


class DcpReader(ReaderBase):
    """An open DCP folder. ``path`` is its ``.metadata`` (the file the source hash starts from)."""

    def __init__(self, path: Path, allow_expansion: bool = False, allow_outside_shards: bool = False):
        folder = path if path.is_dir() else path.parent
        self.folder = folder
        self.path = folder / METADATA_NAME
        if not allow_outside_shards:  # before it is read: a link may point the read anywhere
            self._refuse_outside(METADATA_NAME)
        self.layout: DcpLayout = read_layout(self.path, allow_large=allow_expansion)
        self.shards = self.layout.files  # data files, beside .metadata: hashed as the source
        if not allow_outside_shards:
            for name in self.shards:
                self._refuse_outside(name, f"data file {name!r} ")
        # tensors of a dtype safetensors cannot store (complex128): listed, key → dtype; get_tensor refuses them
        self.unstorable_keys: dict[str, str] = {k: t.spec.dtype for k, t in self.layout.tensors.items()
                                                if t.spec.dtype in OTHER_DTYPE_BITS}
        # inspect and plan read .metadata alone, so a missing data file is a warning until it is needed
        self._unreadable = {name: why for name in self.shards if (why := self._data_problem(name))}
        if self._unreadable:
            named = listed([f"{n} ({why})" for n, why in self._unreadable.items()], 5)
            warnings.warn(CheckpointWarning(
                f"{folder}: .metadata names data files that cannot be read: {named}; inspect and plan work "
                "from .metadata alone, but convert refuses the folder until its data files are there"), stacklevel=2)
        self._fds: dict[str, int] = {}
        self._safetensors: dict[str, Any] = {}
        self._allow_expansion = allow_expansion
        self._budget: ExpansionBudget | None = None

    def budget(self) -> ExpansionBudget:
        """What the folder may grow by in memory or output (blobs' requests, repeated views): like a
        torch file's, the larger of 256 MiB and 4x the folder's data files."""
        if self._budget is None:
            size = self.path.stat().st_size + sum(os.fstat(self._fd(name)).st_size for name in self.layout.files)
            self._budget = ExpansionBudget(self.folder, size, None if self._allow_expansion else expansion_limit(size))
        return self._budget

    def specs(self) -> dict[str, TensorSpec]:
        return {k: t.spec for k, t in self.layout.tensors.items()}

    def non_tensors(self) -> dict[str, str]:
        """Non-tensor items, key → 'bytes': DCP pickles them; they are listed, never unpickled."""
        return {k: "bytes" for k in self.layout.non_tensors}

    def byte_items(self) -> dict[str, FileRange]:
        """Where each non-tensor item's bytes are (DCP pickled them there; they are never unpickled
        here), for a DCP output to carry them over as they are. Items saved through a stream
        extension, or with no storage entry, are not offered."""
        return {key: FileRange(self.folder / c.file, c.start, c.start + c.length)
                for key, c in self.layout.non_tensors.items() if c is not None and not c.transforms}

    def require_data(self) -> None:
        """Raise the error for the first data file named in .metadata that cannot be read (missing, a
        folder, a FIFO): convert calls it before hashing or writing anything."""
        for name in self._unreadable:
            self._fd(name)

    def chunks(self, key: str) -> tuple[DcpChunk, ...]:
        return self._tensor(key).chunks

    def get_tensor(self, key: str) -> Any:
        """The whole tensor, its chunks read into their places (memory: the tensor and a bounded buffer)."""
        if not torch_available():
            raise MissingExtraError(f"{self.path}: reading DCP tensor data needs torch, which is not installed: "
                                   f"{TORCH_EXTRA}")
        import torch

        from ..torch_dtypes import NAME_TO_TORCH

        item = self._tensor(key)
        spec = item.spec
        if key in self.unstorable_keys:
            raise unstorable_refusal(self.path, key, spec.dtype)
        whole = torch.empty(spec.shape, dtype=NAME_TO_TORCH[spec.dtype])
        strides = whole.stride()
        for chunk in item.chunks:  # its place in one view (.metadata's chunks fit the size: checked when read),
            start = sum(o * s for o, s in zip(chunk.offsets, strides))  # not one narrow per dimension (quadratic)
            self._read_chunk(key, chunk, whole.as_strided(chunk.sizes, strides, start))
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

    def _refuse_outside(self, name: str, what: str = "") -> None:
        """CheckpointError for the file ``name`` of the folder whose real path (links resolved) is outside
        the folder; ``what`` names a data file in the message (``.metadata`` is the path it starts with)."""
        folder = Path(os.path.realpath(self.folder))
        real = Path(os.path.realpath(self.folder / name))
        if not real.is_relative_to(folder):
            raise CheckpointError(
                f"{self.path}: {what}is a link to {real}, outside the checkpoint folder {folder}; "
                "refused so a checkpoint cannot point reads elsewhere. If you trust it, pass "
                "--allow-outside-shards (Python: allow_outside_shards=True)")

    def _data_problem(self, name: str) -> str | None:
        """Why the data file ``name`` cannot be read (a stat, no read), or None."""
        try:
            kind = file_kind(os.stat(self.folder / name).st_mode)
        except OSError as exc:
            return "missing" if exc.errno == errno.ENOENT else (exc.strerror or str(exc)).lower()
        return f"{kind}, not a regular file" if kind else None

    def _fd(self, name: str) -> int:
        if name not in self._fds:
            path = self.folder / name
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
            except OSError as exc:
                hint = "; the checkpoint folder is incomplete (copy it again in full)" if exc.errno == errno.ENOENT else ""
                raise CheckpointError(f"{path}: cannot read the DCP data file named in .metadata: "
                                      f"{exc.strerror or exc}{hint}") from None
            kind = file_kind(os.fstat(fd).st_mode)
            if kind:
                os.close(fd)
                raise CheckpointError(f"{path}: the DCP data file named in .metadata is {kind}{link_note(path)}, "
                                      "not a regular file; put the data file dcp.save wrote in its place")
            self._fds[name] = fd
        return self._fds[name]

    def _read_chunk(self, key: str, chunk: DcpChunk, target: Any) -> None:
        """One chunk into ``target`` (its place in the whole tensor), checked against .metadata."""
        where = (f"{self.folder / chunk.file}: '{key}' (chunk at {shown_shape(chunk.offsets)}, bytes "
                 f"{chunk.start}+{chunk.length})")
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
            read_blob_into(target, fd, chunk.start, chunk.length, self.budget(), where)
        else:
            self._safetensors_chunk(key, chunk, target, where)

    def _safetensors_chunk(self, key: str, chunk: DcpChunk, target: Any, where: str) -> None:
        """The safetensors-serialised variant: each data file is a safetensors file keyed by fqn."""
        from ..torch_dtypes import dtype_name
        from .safetensors_format import open_safetensors, sniff_safetensors

        path = self.folder / chunk.file
        if chunk.file not in self._safetensors:
            if not sniff_safetensors(path):
                raise CheckpointError(f"{where}: neither a torch.save blob nor a safetensors data file; "
                                      "the data file is damaged or not DCP's")
            self._safetensors[chunk.file] = open_safetensors(path)
        reader = self._safetensors[chunk.file]
        spec = reader.specs().get(key)
        if spec is None:
            raise CheckpointError(f"{where}: the safetensors data file has no tensor '{key}'")
        want = (dtype_name(target.dtype, key, str(self.path)), tuple(target.shape))
        if (spec.dtype, tuple(spec.shape)) != want:
            raise CheckpointError(f"{where}: holds {spec.dtype} {shown_shape(spec.shape)} but .metadata says "
                                  f"{want[0]} {shown_shape(want[1])}; the folder's files do not belong together")
        stream_into(target, self._fd(chunk.file), reader.locate(key).start, where)
