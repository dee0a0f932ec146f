"""Tensors that live in a memory-mapped file: where their bytes are in it, and giving pages back.

``torch.load(mmap=True)`` maps the whole checkpoint once and every tensor is a slice of that
one mapping. Two consequences for a converter:

- a contiguous tensor's bytes are a byte range of the checkpoint file, found from the
  mapping's address and file offset in ``/proc/self/maps`` (:class:`FileMappings`); the
  kernel can then copy them file to file, like a safetensors range, with no page faults
  and no copy through our memory;
- dropping a tensor frees nothing: every page read stays resident (and counts in RSS)
  until the last tensor dies. :func:`release_pages` drops them with
  ``madvise(MADV_DONTNEED)``; the file still holds the bytes, so a later read faults them
  in again from the page cache.

Both rely on the pages never having been written to (a written page of a private mapping
differs from the file, and DONTNEED would lose the write): readers hand out tensors the
caller must not modify, and ``--verify`` compares the output with the tensors themselves.
Off Linux, or for memory that is not a file's, both simply decline (``None`` / ``False``).
"""
from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import mmap
import os
import sys
from pathlib import Path
from typing import Any, Iterator

MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", 4)
_MIN_BYTES = 1024 * 1024  # smaller tensors are not worth a look at the memory map
_libc: Any = None


def _maps() -> Iterator[tuple[int, int, int, int, int, int, bytes]]:
    """(start, end, file offset, dev major, dev minor, inode, path) of every mapping of this process."""
    if not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/maps", "rb") as fh:
            lines = fh.readlines()
    except OSError:
        return
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            lo, hi = (int(x, 16) for x in parts[0].split(b"-"))
            major, minor = (int(x, 16) for x in parts[3].split(b":"))
            offset, inode = int(parts[2], 16), int(parts[4])
        except ValueError:
            continue
        yield lo, hi, offset, major, minor, inode, (parts[5].strip() if len(parts) > 5 else b"")


class FileMappings:
    """Where one file is memory-mapped in this process, read once from ``/proc/self/maps``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        st = os.stat(self.path)
        real = os.fsencode(os.path.realpath(self.path))
        dev = (os.major(st.st_dev), os.minor(st.st_dev))
        # same inode, and the same device or (filesystems that report another device) the same path
        found = sorted((lo, hi, off) for lo, hi, off, major, minor, inode, name in _maps()
                       if inode == st.st_ino and ((major, minor) == dev or name == real))
        self._starts = [m[0] for m in found]
        self._maps = found

    def __bool__(self) -> bool:
        return bool(self._maps)

    def file_range(self, tensor: Any) -> tuple[int, int] | None:
        """``(start, end)`` offsets of a contiguous CPU tensor's bytes in the file, or None."""
        if not self._maps or tensor.device.type != "cpu" or not tensor.is_contiguous():
            return None
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes == 0:
            return None
        ptr = tensor.data_ptr()
        i = bisect.bisect_right(self._starts, ptr) - 1
        if i < 0:
            return None
        lo, hi, off = self._maps[i]
        if not (lo <= ptr and ptr + nbytes <= hi):
            return None
        start = ptr - lo + off
        return start, start + nbytes


def _madvise(start: int, length: int) -> bool:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), MADV_DONTNEED) == 0


def _file_backed(start: int, end: int) -> bool:
    """True when ``[start, end)`` lies inside one mapping of a regular file."""
    for lo, hi, _, _, _, inode, name in _maps():
        if lo <= start and end <= hi:
            return inode != 0 and name.startswith(b"/") and not name.startswith(b"/dev/")
    return False


def release_pages(tensor: Any) -> bool:
    """Drop the resident pages under ``tensor``'s elements when they are file-backed; True if done."""
    if not sys.platform.startswith("linux") or tensor.numel() == 0 or tensor.device.type != "cpu":
        return False
    span = 1 + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride()) if n > 0)
    length = span * tensor.element_size()
    if length < _MIN_BYTES:
        return False
    page = mmap.PAGESIZE
    # only whole pages inside the tensor: pages shared with a neighbour stay (they are few)
    start = -(-tensor.data_ptr() // page) * page
    end = (tensor.data_ptr() + length) // page * page
    if end <= start or not _file_backed(start, end):
        return False
    return _madvise(start, end - start)
