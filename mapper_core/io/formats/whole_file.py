"""Reading a small file whole (a spec file, a DCP ``.metadata``): only a regular file, never past a
cap and never past the size it had when opened. A device (``/dev/zero``) would be read without
end, a FIFO would block, a runaway file would fill memory: each is refused by name before
anything is read. No torch."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

from ...errors import CheckpointError


def file_kind(mode: int) -> str | None:
    """What kind of non-regular file ``mode`` (from stat) describes, or None for a regular file."""
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def link_note(path: Path) -> str:
    """`` (a link to TARGET)`` when ``path`` is a symbolic link, else ''."""
    return f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""


def read_whole(path: Path, cap: int | None, *, what: str, too_big: Callable[[int], str], grew: str) -> bytes:
    """The bytes of ``path``. CheckpointError naming ``path`` when it is not a regular file (``what``:
    what the file should be, and what to do), when its size is past ``cap`` (``too_big(size)``: the
    message after ``path: ``), or when it grew while it was read (``grew``: what to do then)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with open(fd, "rb") as fh:
        try:
            info = os.fstat(fd)
            kind = file_kind(info.st_mode)
            if kind:
                raise CheckpointError(f"{path}: is {kind}{link_note(path)}, not a regular file; {what}")
            size = info.st_size
            if cap is not None and size > cap:  # checked on the open file: a swap after a stat cannot slip by
                raise CheckpointError(f"{path}: {too_big(size)}")
            data = fh.read(size + 1)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > size:
        raise CheckpointError(f"{path}: grew while it was read (past the {size:,} bytes it had); {grew}")
    return data
