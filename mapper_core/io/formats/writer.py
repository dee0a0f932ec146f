"""Streaming safetensors writer: the header from specs, then each tensor's bytes, one at a time.

The safetensors library has no streaming writer, so this is the one place the format is
written by hand: the header (``save_file``'s order and JSON, byte for byte) comes from
:mod:`.header_encode`, then the tensors' bytes follow in that order.

Tensor bytes come from an :class:`Entry`'s ``data``: a :class:`FileRange` (raw bytes of
another file, copied without decoding through ``os.copy_file_range`` / ``os.sendfile`` /
a 1 MiB buffer, so torch is never imported) or a callable returning a torch tensor (made
contiguous, written through a zero-copy, read-only view of its memory, then dropped; the
tensor itself is never changed).

A header can be rewritten after the data (:meth:`FileWriter.finish`) as long as it is no
longer than the space reserved: metadata known only at the end (a source hash computed
while copying) is first written as a same-length placeholder.
"""
from __future__ import annotations

import errno
import os
import sys
from bisect import bisect_right
from itertools import accumulate, compress, repeat
from operator import eq, ge, not_, sub
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ...errors import CheckpointError
from .base import FileRange
from .entries import DATA, Entry, EntryColumns, one_file
from .header_encode import ALIGN, DTYPE_ORDER, TensorLayout, check_metadata, encode_header, library_order
from .safetensors_header import MAX_HEADER_BYTES
from ...gc_pause import pauses_gc
from .pieces import contiguous_pieces
from ..clone import Cloner, best_residue, header_length
from ..writeback import WriteBehind

__all__ = ["ALIGN", "DTYPE_ORDER", "Entry", "EntryColumns", "FileRange", "FileWriter", "RangeCopier", "encode_header",
           "library_order", "tensor_bytes", "write_safetensors"]
CHUNK = 64 * 1024 * 1024  # bytes per copy call: progress and signals get a turn this often
BUFFER = 1024 * 1024  # the bounded buffer of the fallback copy


TensorSource = Callable[[], Any]  # returns a torch.Tensor; called once, when the tensor is written
ProgressFn = Callable[[int, str], None]  # (bytes just written, key)


# -- copying bytes --------------------------------------------------------------------------

_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EPERM}


class RangeCopier:
    """Copies byte ranges between files with the fastest call that works, falling back once.

    ``copy_file_range`` lets the kernel move (or share) the bytes; ``sendfile`` copies
    in the kernel too; the last resort reads and writes through a 1 MiB buffer.
    """

    METHODS = ("copy_file_range", "sendfile", "buffer")

    def __init__(self, method: str | None = None):
        if method is not None and method not in self.METHODS:
            raise ValueError(f"unknown copy method {method!r}; expected one of {self.METHODS}")
        available = [m for m in self.METHODS if m == "buffer" or hasattr(os, m)]
        if sys.platform != "linux":  # sendfile to a regular file is a Linux feature
            available = [m for m in available if m != "sendfile"]
        self.methods = [method] if method else available

    def copy(self, src_fd: int, src_off: int, dst_fd: int, dst_off: int, count: int,
             source: object = "the source file") -> None:
        """Copy ``count`` bytes; short reads (a file truncated meanwhile) raise CheckpointError naming ``source``."""
        while count > 0:
            method = self.methods[0]
            try:
                n = self._once(method, src_fd, src_off, dst_fd, dst_off, min(count, CHUNK))
            except OSError as exc:
                if method != "buffer" and exc.errno in _FALLBACK_ERRNOS and len(self.methods) > 1:
                    self.methods.pop(0)  # this kernel/filesystem cannot; do not try again
                    continue
                raise
            if n == 0:
                raise CheckpointError(f"{source}: ended early while copying at offset {src_off}; was it truncated meanwhile?")
            src_off += n
            dst_off += n
            count -= n

    @staticmethod
    def _once(method: str, src_fd: int, src_off: int, dst_fd: int, dst_off: int, count: int) -> int:
        if method == "copy_file_range":
            return os.copy_file_range(src_fd, dst_fd, count, src_off, dst_off)
        if method == "sendfile":
            os.lseek(dst_fd, dst_off, os.SEEK_SET)  # sendfile writes at the file position
            return os.sendfile(dst_fd, src_fd, src_off, count)
        buf = os.pread(src_fd, min(count, BUFFER), src_off)
        _pwrite_all(dst_fd, memoryview(buf), dst_off)
        return len(buf)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data[:CHUNK], offset)
        data = data[n:]
        offset += n


def tensor_bytes(tensor: Any) -> memoryview:
    """A zero-copy, read-only byte view of a contiguous CPU tensor's own elements (no numpy).

    The caller keeps ``tensor`` alive while the view is in use.
    """
    import ctypes

    if sys.byteorder != "little":  # safetensors is little-endian; torch tensors are native order
        raise CheckpointError("writing safetensors from tensors needs a little-endian machine")
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes == 0:
        return memoryview(b"")
    if not tensor.is_contiguous() or tensor.device.type != "cpu":
        raise ValueError("tensor_bytes needs a contiguous CPU tensor")
    return memoryview((ctypes.c_char * nbytes).from_address(tensor.data_ptr())).cast("B").toreadonly()


class FileWriter:
    """Writes one safetensors file into an open descriptor: header, then the tensors in order."""

    def __init__(self, fd: int, entries: Sequence[Entry], metadata: Mapping[str, str] | None = None,
                 copier: RangeCopier | None = None, cloner: Cloner | None = None):
        self.fd = fd
        self.entries = library_order(entries)
        self.metadata = dict(metadata or {})
        check_metadata(self.metadata)
        self.layout = TensorLayout(self.entries)  # the tensor part of the header, rendered once
        self.header = self.layout.header(self.metadata)
        self.copier = copier or RangeCopier()
        self.cloner = cloner  # shares whole blocks with the source where the filesystem can (io/clone.py)
        self._clone_path: Path | None = None  # the source file whose ranges are cloned
        self._src_fds: dict[Path, int] = {}
        self._behind: WriteBehind | None = None

    @property
    def data_start(self) -> int:
        return len(self.header)

    @property
    def offsets(self) -> dict[str, tuple[int, int]]:
        """Each key's data offsets, relative to the data area."""
        return self.layout.offsets

    @property
    def size(self) -> int:
        """The file's final size in bytes."""
        return self.data_start + self.layout.total

    def write(self, progress: ProgressFn | None = None) -> None:
        """Header, then every tensor's bytes; sources are opened once and closed at the end.

        The disk writes each finished stretch while the next is copied (:mod:`..writeback`), so
        the caller's fsync finds little left to do.
        """
        self._behind = WriteBehind(self.fd)
        try:
            if self.cloner is not None:
                self._prepare_clone(self.cloner)
            _pwrite_all(self.fd, memoryview(self.header), 0)
            for i, j in _runs(self.entries, self.layout.sizes, CLONE_RUN if self._clone_path else MAX_RUN):
                if j - i == 1:
                    self._write_entry(i, progress)
                else:
                    self._write_run(i, j, progress)
        finally:
            for fd in self._src_fds.values():
                os.close(fd)
            self._src_fds.clear()
        self._behind.flush()
        os.ftruncate(self.fd, self.size)  # the file ends where the data does, whatever the descriptor held

    def finish(self, metadata: Mapping[str, str]) -> None:
        """Rewrite the header with final ``metadata``; it must fit the space already used."""
        header = self.layout.header(metadata, min_length=len(self.header) - 8)
        if len(header) != len(self.header):
            raise RuntimeError("final safetensors header is longer than the reserved one; placeholder too short")
        self.metadata, self.header = dict(metadata), header
        _pwrite_all(self.fd, memoryview(header), 0)

    def _write_entry(self, i: int, progress: ProgressFn | None) -> None:
        e, begin, end = self.entries[i], self.layout.begins[i], self.layout.ends[i]
        dst = self.data_start + begin
        if isinstance(e.data, FileRange):
            if e.data.nbytes != end - begin:
                raise CheckpointError(
                    f"{e.data.path}: tensor for '{e.key}' has {e.data.nbytes} bytes; its spec says {end - begin}"
                )
            src = self._source_fd(e.data.path)
            pos = e.data.start
            align = self.cloner.block if self._clone_path else 1  # clone pieces end on block boundaries
            while pos < e.data.end:  # chunk by chunk so progress (and Ctrl-C) get a turn
                n = min((CLONE_RUN if align > 1 else CHUNK) - pos % align, e.data.end - pos)
                self._copy(e.data.path, src, pos, dst, n)
                self._wrote(dst, n)
                pos, dst = pos + n, dst + n
                if progress:
                    progress(n, e.key)
            return
        # Only read: the tensor may be the caller's (a memory-mapped view they edited in place).
        # A strided view is made contiguous a piece at a time, never whole (a stride-0 view can
        # stand for gigabytes).
        for piece in contiguous_pieces(_checked_tensor(e), CHUNK):
            view = tensor_bytes(piece)
            for i in range(0, len(view), CHUNK):
                part = view[i:i + CHUNK]
                _pwrite_all(self.fd, part, dst)
                self._wrote(dst, len(part))
                dst += len(part)
                if progress:
                    progress(len(part), e.key)
            view.release()
            del piece, view  # a contiguous copy (if one was made) goes now, before the next piece

    def _write_run(self, i: int, j: int, progress: ProgressFn | None) -> None:
        """Entries ``i..j-1``, whose bytes follow each other in one source file: one copy for all of them."""
        first, last = self.entries[i].data, self.entries[j - 1].data
        dst = self.data_start + self.layout.begins[i]
        src = self._source_fd(first.path)
        self._copy(first.path, src, first.start, dst, last.end - first.start)
        self._wrote(dst, last.end - first.start)
        if progress:
            progress(last.end - first.start, self.entries[j - 1].key)

    @pauses_gc
    def _prepare_clone(self, cloner: Cloner) -> None:
        """Pad the header so the main source's ranges line up with the output's blocks, if the
        filesystem clones between the two files; otherwise leave the header as save_file's."""
        begins = self.layout.begins
        ranges = one_file(self.entries)
        if ranges is not None:  # only a range of a block or more can hold a whole block
            path, starts, ends = ranges
            big = compress(range(len(starts)), map(ge, map(sub, ends, starts), repeat(cloner.block)))
            pairs = ((starts[i], begins[i], ends[i] - starts[i]) for i in big)
        else:
            datas = list(map(DATA, self.entries))
            kept = [i for i, d in enumerate(datas) if isinstance(d, FileRange)]
            if not kept:
                return
            path = _main_path([datas[i] for i in kept])
            pairs = ((datas[i].start, begins[i], datas[i].nbytes) for i in kept if datas[i].path == path)
        residue = best_residue(pairs, cloner.block)
        if residue is None:
            return
        length = header_length(len(self.header) - 8, residue, cloner.block)
        if length > MAX_HEADER_BYTES or not cloner.probe(self._source_fd(path), self.fd):
            return
        self.header = self.layout.header(self.metadata, min_length=length)
        self._clone_path = path
        os.ftruncate(self.fd, self.size)  # every clone lands inside the file

    def _copy(self, path: Path, src: int, pos: int, dst: int, n: int) -> None:
        if path == self._clone_path:
            self.cloner.copy(src, pos, self.fd, dst, n,  # type: ignore[union-attr]
                             lambda s, so, d, do, k: self.copier.copy(s, so, d, do, k, path))
        else:
            self.copier.copy(src, pos, self.fd, dst, n, path)

    def _wrote(self, offset: int, n: int) -> None:
        if self._behind is not None:
            self._behind.wrote(offset, n)

    def _source_fd(self, path: Path) -> int:
        fd = self._src_fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError as exc:
                raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
            self._src_fds[path] = fd
        return fd


MAX_RUN = 64 * 1024 * 1024  # bytes one coalesced copy may cover (progress and signals get a turn)
CLONE_RUN = 16 << 30  # the same when cloning: one clone call shares 16 GiB in milliseconds


def _main_path(ranges: list[FileRange]) -> Path:
    """The file most of the bytes come from (the first such, on a tie)."""
    by_path: dict[Path, int] = {}
    for data in ranges:
        by_path[data.path] = by_path.get(data.path, 0) + data.nbytes
    return max(by_path, key=by_path.__getitem__)


@pauses_gc
def _runs(entries: Sequence[Entry], sizes: Sequence[int], limit: int = MAX_RUN) -> list[tuple[int, int]]:
    """Entries in write order (``sizes``: their specs' bytes) grouped as ``[i, j)`` where their source
    bytes are adjacent in one file and their sizes agree with their specs, so many small tensors
    cost one copy instead of one each; no group is over ``limit`` bytes unless one tensor is."""
    ranges = one_file(entries)
    if ranges is None:
        return _runs_loop(list(map(DATA, entries)), sizes, limit)
    # one file, all ranges: in columns. Entry i joins the one before when both fit their spec
    # and i begins where i-1 ended; stretches that join are then cut where they pass ``limit``
    _, starts, ends = ranges
    if starts[1:] == ends[:-1] and list(map(sub, ends, starts)) == list(sizes):
        breaks = [0, len(starts)]  # the usual case, a whole file in its own order: one stretch
    else:
        fits = list(map(eq, map(sub, ends, starts), sizes))
        joins = map(all, zip(fits[1:], fits, map(eq, starts[1:], ends)))
        breaks = [0, *compress(range(1, len(starts)), map(not_, joins)), len(starts)]
    runs: list[tuple[int, int]] = []
    for a, b in zip(breaks, breaks[1:]):
        total = [0, *accumulate(sizes[a:b])]  # total[k]: bytes of entries a..a+k-1
        i = 0
        while i < b - a:
            j = max(i + 1, bisect_right(total, total[i] + limit) - 1)
            runs.append((a + i, a + j))
            i = j
    return runs


def _runs_loop(datas: list[Any], sizes: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """:func:`_runs` one entry at a time: tensors from callables, ranges of several files."""
    runs: list[tuple[int, int]] = []
    prev: FileRange | None = None
    size = 0
    for i, (data, nbytes) in enumerate(zip(datas, sizes)):
        if (isinstance(data, FileRange) and prev is not None and data.path == prev.path and data.start == prev.end
                and data.nbytes == nbytes and size + data.nbytes <= limit):
            runs[-1] = (runs[-1][0], i + 1)
            size += data.nbytes
        else:
            runs.append((i, i + 1))
            size = data.nbytes if isinstance(data, FileRange) else 0
        prev = data if isinstance(data, FileRange) and data.nbytes == nbytes else None
    return runs


def _checked_tensor(e: Entry) -> Any:
    from ..torch_dtypes import spec_of

    tensor = e.data()  # type: ignore[operator]
    got = spec_of(tensor, e.key)
    if (got.dtype, got.shape) != (e.spec.dtype, tuple(e.spec.shape)):
        raise CheckpointError(
            f"tensor '{e.key}' is {got.dtype} {list(got.shape)} but the plan expected "
            f"{e.spec.dtype} {list(e.spec.shape)}; did the file change while converting?"
        )
    return tensor if tensor.device.type == "cpu" else tensor.cpu()


def write_safetensors(path: str | Path, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
    """Write torch tensors to one safetensors file, atomically (a small convenience over FileWriter)."""
    from ..atomic import AtomicFiles
    from ..torch_dtypes import spec_of

    path = Path(path)
    entries = [Entry(k, spec_of(t, k), (lambda t=t: t)) for k, t in tensors.items()]
    with AtomicFiles() as out:
        FileWriter(out.create(path), entries, metadata).write()
        out.commit()
    return path
