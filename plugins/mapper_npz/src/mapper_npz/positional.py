"""A read-only file whose position is this object's own, read with ``pread``.

A process forked while a reader is open (``mapper convert --workers N``) shares the open file, and
with it the file's offset: the kernel keeps one per open file, not one per process. Python's file
objects seek and then read, and buffer as if the offset were theirs, so two processes reading the
same archive would read each other's bytes. Here the position lives in the object, which each
process has a copy of after the fork, and every read names its offset: nothing uses the shared one.
"""
from __future__ import annotations

import io
import os
from pathlib import Path


class PositionalFile(io.RawIOBase):
    """``open(path, "rb")`` without a shared offset: for :class:`zipfile.ZipFile`."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.name = str(path)
        self._fd = os.open(path, os.O_RDONLY)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if hasattr(os, "preadv"):
            n = os.preadv(self._fd, [view], self._pos)
        else:
            data = os.pread(self._fd, len(view), self._pos)
            n = len(data)
            view[:n] = data
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: os.fstat(self._fd).st_size}[whence]
        if base + offset < 0:
            raise OSError(22, f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
