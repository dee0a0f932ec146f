"""Verify written safetensors files: re-open them with the safetensors library and compare
every tensor to its source, bit for bit.

Bytes are compared, not values, so NaN payloads, ``-0.0`` and every dtype count. Raw-byte
sources (:class:`~mapper_core.io.formats.writer.FileRange`) are read back from the source file
in 8 MiB pieces; tensor sources are asked for their tensor again. Imports torch (the
library's reader hands out torch tensors), so it runs only when asked for.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import VerifyError
from .formats.writer import Entry, FileRange, split_shards

PIECE = 8 * 1024 * 1024
# The safetensors library maps the whole output and hands out views of that mapping, so every
# page compared stays resident until the handle and its tensors are gone. The output is opened
# afresh for each run of tensors this large: verifying holds about this much of it at a time.
MAPPED_BYTES = 64 * 1024 * 1024


def verify_file(path: str | Path, entries: Sequence[Entry], shown_as: str | Path | None = None) -> int:
    """Check that ``path`` holds exactly ``entries`` (keys, dtypes, shapes, bytes); returns the count.

    ``shown_as`` names the file in errors (e.g. the destination while ``path`` is a temporary).
    Raises :class:`~mapper_core.errors.VerifyError` naming the first key that differs.
    """
    import torch

    from .torch_dtypes import dtype_name

    name = shown_as or path
    with _open(path, name) as f:
        stored = set(f.keys())
    expected = {e.key for e in entries}
    if stored != expected:
        extra, missing = sorted(stored - expected), sorted(expected - stored)
        what = f"missing '{missing[0]}'" if missing else f"unexpected '{extra[0]}'"
        raise VerifyError(f"{name}: holds {len(stored)} tensors, expected {len(expected)} ({what})")
    buf = bytearray(PIECE)
    for group in split_shards(entries, MAPPED_BYTES):
        with _open(path, name) as f:
            for e in group:
                out = f.get_tensor(e.key)
                got = (dtype_name(out.dtype, e.key, str(name)), tuple(out.shape))
                if got != (e.spec.dtype, tuple(e.spec.shape)):
                    raise VerifyError(
                        f"{name}: tensor '{e.key}' reads back as {got[0]} {list(got[1])}, expected "
                        f"{e.spec.dtype} {list(e.spec.shape)}"
                    )
                out_bytes = out.contiguous().reshape(-1).view(torch.uint8)
                if isinstance(e.data, FileRange):
                    offset = _compare_range(out_bytes, e.data, buf)
                else:
                    src = e.data().detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # only read
                    offset = _first_difference(out_bytes, src, 0)
                    del src
                if offset is not None:
                    source = (f"{e.data.path} bytes {e.data.start}..{e.data.end}" if isinstance(e.data, FileRange)
                              else "its source tensor")
                    raise VerifyError(
                        f"{name}: tensor '{e.key}' differs from {source} at byte {offset}; the output is "
                        "damaged, do not use it (re-run the conversion and report a bug if it repeats)"
                    )
                del out, out_bytes  # the last views of this group's mapping go with the handle
    return len(entries)


def _open(path: str | Path, name: str | Path) -> Any:
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # the library refusing our file is exactly what --verify is for
        raise VerifyError(f"{name}: the safetensors library cannot open the output: {exc}") from None


def _compare_range(out_bytes: Any, data: FileRange, buf: bytearray) -> int | None:
    import torch

    if out_bytes.numel() != data.nbytes:
        return min(out_bytes.numel(), data.nbytes)
    view = memoryview(buf)
    src = torch.frombuffer(buf, dtype=torch.uint8)
    fd = os.open(data.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        done = 0
        while done < data.nbytes:
            want = min(PIECE, data.nbytes - done)
            n = _pread_into(fd, view[:want], data.start + done)
            if n != want:
                return done + n
            diff = _first_difference(out_bytes[done:done + n], src[:n], done)
            if diff is not None:
                return diff
            done += n
    finally:
        os.close(fd)
    return None


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        got = 0
        while got < len(view):
            n = os.preadv(fd, [view[got:]], offset + got)
            if n == 0:
                break
            got += n
        return got
    data = os.pread(fd, len(view), offset)
    view[:len(data)] = data
    return len(data)


def _first_difference(a: Any, b: Any, base: int) -> int | None:
    import torch

    if a.numel() != b.numel():
        return base + min(a.numel(), b.numel())
    if torch.equal(a, b):
        return None
    return base + int((a != b).nonzero()[0, 0])
