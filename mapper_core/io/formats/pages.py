"""Tensors that live in a memory-mapped file: where their bytes are in that file.

``torch.load(mmap=True)`` maps the whole checkpoint once and every tensor is a slice of that
one mapping, so a contiguous tensor's bytes are a byte range of the checkpoint file, found
from the mapping's address and file offset in ``/proc/self/maps`` (:class:`FileMappings`).
The kernel can then copy them file to file, like a safetensors range, with no page faults
and no copy through our memory.

Only addresses are read here; a tensor's memory is never touched. Pages that reading a
mapped tensor faults in are left alone on purpose: they are the caller's (a private
mapping keeps in-place edits in them), and clean file pages are reclaimed by the kernel
under memory pressure anyway. Off Linux, or for memory that is not a file's, the lookup
simply declines (``None``).
"""
from __future__ import annotations

import bisect
import os
import sys
from pathlib import Path
from typing import Any, Iterator


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
