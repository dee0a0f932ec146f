"""Cloning byte ranges on filesystems that share blocks between files (XFS, Btrfs, ...).

``FICLONERANGE`` makes a range of the output share the source's blocks: no data is read or
written, whatever the size. The filesystem only clones whole blocks, at offsets that are
multiples of its block size in both files. A safetensors rename keeps each tensor's bytes, so
if the new data region starts at the same offset modulo the block size as the old one (the
header padded with spaces, which the format allows), every tensor that keeps its place
relative to its neighbours lines up: its whole blocks are cloned and only the partial blocks
at its two ends are copied.

:func:`header_length` is that arithmetic; :class:`Cloner` does the cloning and falls back to
copying, for good, the first time the filesystem says it cannot.
"""
from __future__ import annotations

import errno
import os
import struct
from collections import Counter
from typing import Callable, Iterable

# _IOW(0x94, 13, struct file_clone_range): <linux/fs.h>
FICLONERANGE = 0x4020940D
# what a filesystem (or the pair of files) that cannot share blocks answers
_CANNOT = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS,
           errno.EPERM, errno.EBADF, errno.ETXTBSY, errno.EISDIR}
ALIGN = 8  # the safetensors writer keeps the data region 8-aligned (every element aligned)

CloneFn = Callable[[int, int, int, int, int], None]  # (src_fd, src_offset, dst_fd, dst_offset, length)
CopyFn = Callable[[int, int, int, int, int], None]  # the same, by copying


def ficlonerange(src_fd: int, src_offset: int, dst_fd: int, dst_offset: int, length: int) -> None:
    """Share ``length`` bytes of ``src_fd`` at ``src_offset`` as ``dst_fd``'s bytes at ``dst_offset`` (OSError if not)."""
    import fcntl

    fcntl.ioctl(dst_fd, FICLONERANGE, struct.pack("=qQQQ", src_fd, src_offset, length, dst_offset))


def block_size(fd: int) -> int:
    """The filesystem's block size, the unit it clones in."""
    try:
        return os.fstatvfs(fd).f_bsize or 4096
    except OSError:
        return 4096


def best_residue(pairs: Iterable[tuple[int, int, int]], block: int) -> int | None:
    """The data-region offset modulo ``block`` under which the most bytes can be cloned.

    ``pairs`` are (source offset in the source file, offset within the new data region, bytes)
    of the ranges to copy. None when no range holds a whole block, or the best offset would
    leave the data region unaligned for its elements (not a multiple of 8).
    """
    weight: Counter[int] = Counter()
    for src, rel, n in pairs:
        if _whole_blocks(n, src, block) > 0:
            weight[(src - rel) % block] += n
    if not weight:
        return None
    residue, _ = weight.most_common(1)[0]
    return residue if residue % ALIGN == 0 else None


def header_length(natural: int, residue: int, block: int) -> int:
    """The padded header JSON length (after the 8-byte length field) that starts the data region
    at ``residue`` modulo ``block``; at least ``natural`` (already a multiple of 8)."""
    start = 8 + natural
    return natural + (residue - start) % block


def _whole_blocks(n: int, src: int, block: int) -> int:
    first = -src % block
    return max(0, (n - first) // block)


class Cloner:
    """Clones the whole blocks of each range and copies the rest; copies everything once cloning fails.

    ``clone`` is :func:`ficlonerange` unless injected (tests). ``cloned`` and ``copied`` count bytes.
    """

    def __init__(self, block: int, clone: CloneFn | None = None):
        self.block = block
        self._clone: CloneFn | None = clone or ficlonerange
        self.cloned = 0
        self.copied = 0
        self.refusal: str | None = None  # why the filesystem would not clone, once it said so

    @property
    def working(self) -> bool:
        return self._clone is not None

    def probe(self, src_fd: int, dst_fd: int) -> bool:
        """Try one block (the source's first, into the empty output, then truncated away)."""
        if self._clone is None:
            return False
        try:
            self._clone(src_fd, 0, dst_fd, 0, self.block)
        except OSError as exc:
            self._refuse(exc)
            return False
        finally:
            os.ftruncate(dst_fd, 0)
        return True

    def copy(self, src_fd: int, src_offset: int, dst_fd: int, dst_offset: int, length: int, copy: CopyFn) -> None:
        """Move ``length`` bytes: the whole blocks that line up by cloning, the edges by ``copy``."""
        b = self.block
        head = -src_offset % b
        middle = (length - head) // b * b if length > head else 0
        if self._clone is None or middle <= 0 or (dst_offset - src_offset) % b:
            copy(src_fd, src_offset, dst_fd, dst_offset, length)
            self.copied += length
            return
        if head:
            copy(src_fd, src_offset, dst_fd, dst_offset, head)
        try:
            self._clone(src_fd, src_offset + head, dst_fd, dst_offset + head, middle)
        except OSError as exc:
            self._refuse(exc)
            copy(src_fd, src_offset + head, dst_fd, dst_offset + head, middle)
            self.copied += middle
        else:
            self.cloned += middle
        tail = length - head - middle
        if tail:
            copy(src_fd, src_offset + head + middle, dst_fd, dst_offset + head + middle, tail)
        self.copied += head + tail

    def _refuse(self, exc: OSError) -> None:
        """Turn cloning off when the error means 'cannot here'; raise any other (ENOSPC, EIO)."""
        if exc.errno not in _CANNOT:
            raise exc
        self._clone = None
        self.refusal = os.strerror(exc.errno) if exc.errno else str(exc)
        return False
