"""Streaming safetensors writer: the header from specs, then each tensor's bytes, one at a time.

The safetensors library has no streaming writer, so this is the one place the format is
written by hand. The layout follows the library's ``save_file`` byte for byte:

- an 8-byte little-endian header length, then the header JSON (compact, ``__metadata__``
  first), padded with spaces so the data area starts on an 8-byte boundary;
- tensors ordered by dtype alignment, widest first, then by name (the library's order:
  every tensor starts aligned to its element size), their byte ranges tiling the data area.

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
import json
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ...errors import BadInputError, CheckpointError
from .base import FileRange
from ...specs import DTYPE_BITS, TensorSpec, nbytes_of
from .safetensors_header import MAX_HEADER_BYTES
from ...gc_pause import pauses_gc
from .pieces import contiguous_pieces
from ..clone import Cloner, best_residue, header_length
from ..writeback import WriteBehind

# the safetensors library's dtype order (ascending); tensors are written in descending order
DTYPE_ORDER = tuple(DTYPE_BITS)
_RANK = {name: i for i, name in enumerate(DTYPE_ORDER)}
ALIGN = 8
CHUNK = 64 * 1024 * 1024  # bytes per copy call: progress and signals get a turn this often
BUFFER = 1024 * 1024  # the bounded buffer of the fallback copy


TensorSource = Callable[[], Any]  # returns a torch.Tensor; called once, when the tensor is written


@dataclass(frozen=True, slots=True)
class Entry:
    """One tensor to write: its key, its spec, where its bytes come from."""

    key: str
    spec: TensorSpec
    data: FileRange | TensorSource


ProgressFn = Callable[[int, str], None]  # (bytes just written, key)


@pauses_gc
def library_order(entries: Sequence[Entry]) -> list[Entry]:
    """The order ``safetensors.save_file`` writes tensors in: widest dtype first, then by key."""
    return sorted(entries, key=lambda e: (-_RANK[e.spec.dtype], e.key))


@pauses_gc
def encode_header(entries: Sequence[Entry], metadata: Mapping[str, str] | None = None,
                  min_length: int = 0) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The 8-byte length + header JSON + space padding for ``entries`` in the given order.

    Returns the bytes and each key's data offsets (relative to the data area). The header
    is padded to at least ``min_length`` bytes (then to a multiple of 8).
    """
    parts = ["{"]  # the JSON text built piece by piece: a million tensors need no dict of dicts
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise BadInputError(f"safetensors metadata must map strings to strings; bad entry {bad[0]!r}")
        parts.append('"__metadata__":' + _json({k: metadata[k] for k in sorted(metadata)}) + ",")
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for e in entries:  # one pass, a few lookups per tensor
        key, spec = e.key, e.spec
        if key in offsets or key == "__metadata__":
            why = "is reserved" if key == "__metadata__" else "appears twice"
            raise BadInputError(f"cannot write tensor key '{key}': it {why} in a safetensors header")
        bits = DTYPE_BITS.get(spec.dtype)
        if bits is None:
            raise BadInputError(f"tensor '{key}': dtype {spec.dtype!r} cannot be written to safetensors")
        size = spec.nbytes if bits % 8 == 0 else nbytes_of(spec.dtype, spec.shape)
        if size is None:
            raise BadInputError(f"tensor '{key}': {spec.dtype} {list(spec.shape)} is not a whole number of "
                                "bytes, which safetensors cannot store")
        end = pos + size
        parts.append(f'{_json(key)}:{{"dtype":"{spec.dtype}","shape":[{",".join(map(str, spec.shape))}],'
                     f'"data_offsets":[{pos},{end}]}},')
        offsets[key] = (pos, end)
        pos = end
    parts[-1] = parts[-1][:-1] + "}" if len(parts) > 1 else "{}"
    raw = "".join(parts).encode("utf-8", "surrogatepass")
    del parts
    if _LONE_SURROGATE.search(raw):  # "\ud800": not Unicode, and the library refuses such files
        bad = next(k for k in [*offsets, *(metadata or {}).items()] if _not_utf8(k))
        raise BadInputError(f"cannot write {bad!r:.200} to a safetensors header: it holds a lone UTF-16 "
                            "surrogate, which is not valid Unicode")
    length = max(len(raw), min_length)
    length += -length % ALIGN
    if length > MAX_HEADER_BYTES:
        raise BadInputError(
            f"the safetensors header would be {length:,} bytes, above the library's limit of "
            f"{MAX_HEADER_BYTES:,}: the output could not be opened. Split it with --max-shard-size "
            "(each shard has its own header), or shorten the metadata or tensor names"
        )
    return struct.pack("<Q", length) + raw + b" " * (length - len(raw)), offsets


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # what save_file writes
_LONE_SURROGATE = re.compile(rb"[\xed][\xa0-\xbf][\x80-\xbf]")  # UTF-8 of U+D800..U+DFFF ("surrogatepass")


def _not_utf8(value: Any) -> bool:
    text = value if isinstance(value, str) else "".join(map(str, value))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
        self.header, self.offsets = encode_header(self.entries, self.metadata)
        self.copier = copier or RangeCopier()
        self.cloner = cloner  # shares whole blocks with the source where the filesystem can (io/clone.py)
        self._clone_path: Path | None = None  # the source file whose ranges are cloned
        self._src_fds: dict[Path, int] = {}
        self._behind: WriteBehind | None = None

    @property
    def data_start(self) -> int:
        return len(self.header)

    @property
    def size(self) -> int:
        """The file's final size in bytes."""
        return self.data_start + sum(e.spec.nbytes for e in self.entries)

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
            for run in _runs(self.entries, CLONE_RUN if self._clone_path else MAX_RUN):
                if len(run) == 1:
                    self._write_entry(run[0], progress)
                else:
                    self._write_run(run, progress)
        finally:
            for fd in self._src_fds.values():
                os.close(fd)
            self._src_fds.clear()
        self._behind.flush()
        os.ftruncate(self.fd, self.size)  # the file ends where the data does, whatever the descriptor held

    def finish(self, metadata: Mapping[str, str]) -> None:
        """Rewrite the header with final ``metadata``; it must fit the space already used."""
        header, offsets = encode_header(self.entries, metadata, min_length=len(self.header) - 8)
        if len(header) != len(self.header) or offsets != self.offsets:
            raise RuntimeError("final safetensors header is longer than the reserved one; placeholder too short")
        self.metadata, self.header = dict(metadata), header
        _pwrite_all(self.fd, memoryview(header), 0)

    def _write_entry(self, e: Entry, progress: ProgressFn | None) -> None:
        begin, end = self.offsets[e.key]
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

    def _write_run(self, run: list[Entry], progress: ProgressFn | None) -> None:
        """Tensors whose bytes follow each other in one source file: one copy for all of them."""
        first, last = run[0].data, run[-1].data
        dst = self.data_start + self.offsets[run[0].key][0]
        src = self._source_fd(first.path)  # type: ignore[union-attr]
        self._copy(first.path, src, first.start, dst, last.end - first.start)  # type: ignore[union-attr]
        self._wrote(dst, last.end - first.start)  # type: ignore[union-attr]
        if progress:
            progress(last.end - first.start, run[-1].key)  # type: ignore[union-attr]

    def _prepare_clone(self, cloner: Cloner) -> None:
        """Pad the header so the main source's ranges line up with the output's blocks, if the
        filesystem clones between the two files; otherwise leave the header as save_file's."""
        ranges = [(e.data, self.offsets[e.key][0]) for e in self.entries if isinstance(e.data, FileRange)]
        if not ranges:
            return
        by_path: dict[Path, int] = {}
        for data, _ in ranges:
            by_path[data.path] = by_path.get(data.path, 0) + data.nbytes
        path = max(by_path, key=by_path.__getitem__)
        residue = best_residue(((d.start, rel, d.nbytes) for d, rel in ranges if d.path == path), cloner.block)
        if residue is None:
            return
        length = header_length(len(self.header) - 8, residue, cloner.block)
        if length > MAX_HEADER_BYTES or not cloner.probe(self._source_fd(path), self.fd):
            return
        self.header, _ = encode_header(self.entries, self.metadata, min_length=length)
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


@pauses_gc
def _runs(entries: Sequence[Entry], limit: int = MAX_RUN) -> list[list[Entry]]:
    """Entries in write order, grouped where their source bytes are adjacent in one file (and
    their sizes agree with their specs), so many small tensors cost one copy instead of one each."""
    runs: list[list[Entry]] = []
    prev: FileRange | None = None
    size = 0
    for e in entries:
        data = e.data
        if (isinstance(data, FileRange) and prev is not None and data.path == prev.path and data.start == prev.end
                and data.nbytes == e.spec.nbytes and size + data.nbytes <= limit):
            runs[-1].append(e)
            size += data.nbytes
        else:
            runs.append([e])
            size = data.nbytes if isinstance(data, FileRange) else 0
        prev = data if isinstance(data, FileRange) and data.nbytes == e.spec.nbytes else None
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
