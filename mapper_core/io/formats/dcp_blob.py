"""One chunk of a DCP tensor, read into its place in the whole tensor: checked first, then streamed.

A chunk saved as a ``torch.save`` blob (a zip inside the data file) gets the checks a ``.pt`` file
gets before torch reads a byte of it (:func:`~.torch_archive.check_archive`: its zip records, and
its pickle walked with inert stand-ins), so a blob asking for ``bytearray(3 GiB)``, a compressed
record that inflates past the budget, or a view far larger than its storage is refused before
anything is allocated. torch then reads the pickle only, onto the meta device (no storage bytes),
which gives the chunk's dtype, shape, strides and storage offset; the bytes are read from the
storage's own zip record, a bounded buffer at a time, straight into the chunk's place in the
whole tensor. Memory is the whole tensor plus that buffer. Blobs the streamed path does not cover
(a compressed record, a big-endian file, a non-contiguous view) are loaded whole by torch
(``weights_only``), within the same budget.

A chunk of the safetensors-serialised variant is streamed the same way from its byte range.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ...errors import CheckpointError
from ...specs import shown_shape
from .torch_archive import Archive, ExpansionBudget, check_archive

BUFFER = 8 * 1024 * 1024  # bytes read at a time into the whole tensor


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


def read_blob_into(target: Any, fd: int, start: int, length: int, budget: ExpansionBudget, where: str) -> None:
    """Fill ``target`` (a view of the whole tensor, the chunk's shape) from the ``torch.save`` blob at
    ``start:start+length`` of the open data file ``fd``."""
    named = Path(where)  # check_archive's messages start with it
    budget = ExpansionBudget(named, budget.file_size, budget.limit, budget.spent)  # the folder's, shared
    archive = check_archive(named, budget, opener=lambda: FileWindow(fd, start, length))
    # torch swaps a big-endian blob's bytes while reading them (on the meta device it would swap nothing
    # real and crash); a compressed record is read by decompressing it: both are loaded whole
    whole_load = archive.in_memory or archive.byteorder != "little"
    loaded = _load(fd, start, length, "cpu" if whole_load else "meta", where)
    _check(loaded, target, budget, where)
    record = None if whole_load else _stored_record(archive, loaded, length)
    if record is None:  # not what DCP writes: torch reads it whole (the budget already allowed it)
        target.copy_(loaded if whole_load else _load(fd, start, length, "cpu", where))
        return
    stream_into(target, fd, start + record + loaded.storage_offset() * loaded.element_size(), where)


def _load(fd: int, start: int, length: int, device: str, where: str) -> Any:
    import torch

    try:
        return torch.load(FileWindow(fd, start, length), map_location=device, weights_only=True)
    except Exception as exc:  # weights_only refusing code, a damaged blob: both mean unreadable here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{where}: not a readable torch.save blob (weights_only): {first}") from None


def _check(meta: Any, target: Any, budget: ExpansionBudget, where: str) -> None:
    import torch

    if not isinstance(meta, torch.Tensor):
        raise CheckpointError(f"{where}: holds a {type(meta).__name__}, not a tensor")
    if meta.is_nested or meta.layout != torch.strided:
        raise CheckpointError(f"{where}: holds a {'nested' if meta.is_nested else str(meta.layout)} tensor; "
                              "a DCP chunk is a dense tensor")
    if meta.dtype != target.dtype or tuple(meta.shape) != tuple(target.shape):
        from ..torch_dtypes import dtype_name

        got, want = dtype_name(meta.dtype, 'chunk', where), dtype_name(target.dtype, 'chunk', where)
        raise CheckpointError(f"{where}: holds {got} {shown_shape(meta.shape)} but .metadata says {want} "
                              f"{shown_shape(target.shape)}; the folder's files do not belong together")
    dense = meta.numel() * meta.element_size()
    stored = meta.untyped_storage().nbytes()
    if dense > stored:  # a view repeating its storage (stride 0): writing it makes bytes the file lacks
        budget.spend(f"{where}: a view of shape {shown_shape(meta.shape)} and stride "
                     f"{shown_shape(meta.stride())} over {stored:,} stored bytes", dense - stored)


def _stored_record(archive: Archive, meta: Any, length: int) -> int | None:
    """Where in the blob the chunk's bytes start, when they can be streamed: one uncompressed storage
    record, the chunk contiguous on it."""
    if not meta.is_contiguous() or len(archive.facts.storages) != 1:
        return None
    key = next(iter(archive.facts.storages))
    for begin, size, name, stored in archive.records:
        if stored and name.endswith(f"data/{key}") and begin + size <= length:
            need = (meta.storage_offset() + meta.numel()) * meta.element_size()
            return begin if need <= size else None
    return None


def stream_into(target: Any, fd: int, offset: int, where: str) -> None:
    """Fill ``target`` from the row-major bytes of its shape at ``offset`` of ``fd``, a bounded buffer at a time."""
    import torch

    if target.numel() == 0:
        return
    buf = bytearray(min(BUFFER, target.numel() * target.element_size()))
    _fill(target, fd, offset, buf, where, torch)


def _fill(target: Any, fd: int, offset: int, buf: bytearray, where: str, torch: Any) -> None:
    if target.dim() == 0:
        target.copy_(_read(fd, offset, buf, target.element_size(), where, torch).view(target.dtype)[0])
        return
    rows = target.shape[0]
    row = (target.numel() // rows) * target.element_size()
    if row > len(buf):  # one row is more than the buffer: each row on its own
        for r in range(rows):
            _fill(target[r], fd, offset + r * row, buf, where, torch)
        return
    per = len(buf) // row
    for r in range(0, rows, per):
        k = min(per, rows - r)
        part = _read(fd, offset + r * row, buf, k * row, where, torch)
        target.narrow(0, r, k).copy_(part.view(target.dtype).view((k,) + tuple(target.shape[1:])))


def _read(fd: int, offset: int, buf: bytearray, n: int, where: str, torch: Any) -> Any:
    view = memoryview(buf)[:n]
    done = 0
    while done < n:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise CheckpointError(f"{where}: the data file ends before the chunk's bytes do; it is truncated")
        done += got
    return torch.frombuffer(buf, dtype=torch.uint8, count=n)
