"""Verify written safetensors files: re-open them and compare every tensor to its source, bit
for bit.

Bytes are compared, not values, so NaN payloads, ``-0.0`` and every dtype count. Raw-byte
sources (:class:`~mapper_core.io.formats.writer.FileRange`) are read back from the source file
in 8 MiB pieces; tensor sources are asked for their tensor again. With torch installed the
output is read by the official safetensors library (its Python API hands out torch tensors).
Without torch (``pip install mapper-core``, where every entry is a byte range) the output's
header is read by mapper-core's own strict reader, which shares no code with the writer, and
the data regions are compared with the sources byte for byte.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import VerifyError
from .formats.torch_archive import RecordRange
from .formats.writer import Entry, FileRange
from .formats.shards import split_shards

PIECE = 8 * 1024 * 1024
# The safetensors library maps the whole output and hands out views of that mapping, so every
# page compared stays resident until the handle and its tensors are gone. The output is opened
# afresh for each run of tensors this large: verifying holds about this much of it at a time.
MAPPED_BYTES = 64 * 1024 * 1024


def verify_file(path: str | Path, entries: Sequence[Entry], shown_as: str | Path | None = None,
                step: Callable[[int, str], None] | None = None) -> int:
    """Check that ``path`` holds exactly ``entries`` (keys, dtypes, shapes, bytes); returns the count.

    ``shown_as`` names the file in errors (e.g. the destination while ``path`` is a temporary);
    ``step(nbytes, key)`` is called after each tensor is compared.
    Raises :class:`~mapper_core.errors.VerifyError` naming the first key that differs.
    """
    try:
        import torch  # optional: the header-only install verifies byte ranges without it
    except ModuleNotFoundError:
        return _verify_without_torch(path, entries, shown_as or path, step)

    from .torch_dtypes import NAME_TO_TORCH, spec_of

    name = shown_as or path
    with _open(path, name) as f:
        _same_keys(set(f.keys()), entries, name)
    buf = bytearray(PIECE)
    # dtypes torch has no type for (F6): the library cannot hand them out, so their bytes are compared raw
    raw = [e for e in entries if e.spec.dtype not in NAME_TO_TORCH]
    if raw:
        _compare_raw(path, raw, name, step)
    for group in split_shards([e for e in entries if e.spec.dtype in NAME_TO_TORCH], MAPPED_BYTES):
        with _open(path, name) as f:
            for e in group:
                out = f.get_tensor(e.key)
                read = spec_of(out, e.key, str(name))
                got = (read.dtype, read.shape)
                if got != (e.spec.dtype, tuple(e.spec.shape)):
                    raise VerifyError(
                        f"{name}: tensor '{e.key}' reads back as {got[0]} {list(got[1])}, expected "
                        f"{e.spec.dtype} {list(e.spec.shape)}"
                    )
                out_bytes = out.contiguous().reshape(-1).view(torch.uint8)
                if isinstance(e.data, FileRange):
                    offset = _compare_range(out_bytes, e.data, buf)
                elif isinstance(e.data, RecordRange):  # a torch zip's record, read through the zip reader
                    offset = _compare_pieces(out_bytes, e.data.nbytes, e.data.pieces(PIECE, buf), buf)
                else:
                    src = e.data().detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # only read
                    offset = _first_difference(out_bytes, src, 0)
                    del src
                if offset is not None:
                    _damaged(name, e, offset)
                if step:
                    step(e.spec.nbytes, e.key)
                del out, out_bytes  # the last views of this group's mapping go with the handle
    return len(entries)


def _same_keys(stored: set[str], entries: Sequence[Entry], name: str | Path) -> None:
    expected = {e.key for e in entries}
    if stored != expected:
        extra, missing = sorted(stored - expected), sorted(expected - stored)
        what = f"missing '{missing[0]}'" if missing else f"unexpected '{extra[0]}'"
        raise VerifyError(f"{name}: holds {len(stored)} tensors, expected {len(expected)} ({what})")


def _damaged(name: str | Path, e: Entry, offset: int) -> None:
    source = (f"{e.data.path} bytes {e.data.start}..{e.data.end}" if isinstance(e.data, FileRange)
              else "its source tensor")
    raise VerifyError(f"{name}: tensor '{e.key}' differs from {source} at byte {offset}; the output is "
                      "damaged, do not use it (re-run the conversion and report a bug if it repeats)")


def _verify_without_torch(path: str | Path, entries: Sequence[Entry], name: str | Path,
                          step: Callable[[int, str], None] | None) -> int:
    """The torch-free check: our strict reader parses the header; each data region equals its source."""
    return _compare_raw(path, entries, name, step, every_key=True)


def _compare_raw(path: str | Path, entries: Sequence[Entry], name: str | Path,
                 step: Callable[[int, str], None] | None, every_key: bool = False) -> int:
    from ..errors import CheckpointError
    from .formats.safetensors_format import read_header

    try:
        header = read_header(path)
    except CheckpointError as exc:
        raise VerifyError(f"{name}: the output cannot be read back: {exc}") from None
    if every_key:
        _same_keys(set(header.specs), entries, name)
    buf, out_buf = bytearray(PIECE), bytearray(PIECE)
    for e in entries:
        if not isinstance(e.data, FileRange):
            raise VerifyError(f"{name}: tensor '{e.key}' was computed from a tensor; verifying it needs "
                              "torch: pip install 'mapper-core[torch]'")
        spec = header.specs[e.key]
        if (spec.dtype, tuple(spec.shape)) != (e.spec.dtype, tuple(e.spec.shape)):
            raise VerifyError(f"{name}: tensor '{e.key}' reads back as {spec.dtype} {list(spec.shape)}, "
                              f"expected {e.spec.dtype} {list(e.spec.shape)}")
        begin, end = header.offsets[e.key]
        written = FileRange(Path(path), header.data_start + begin, header.data_start + end)
        offset = _compare_files(written, e.data, out_buf, buf)
        if offset is not None:
            _damaged(name, e, offset)
        if step:
            step(e.spec.nbytes, e.key)
    return len(entries)


def _compare_files(a: FileRange, b: FileRange, buf_a: bytearray, buf_b: bytearray) -> int | None:
    """The first byte where two file ranges differ (or where the shorter ends), or None."""
    if a.nbytes != b.nbytes:
        return min(a.nbytes, b.nbytes)
    fa = os.open(a.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        fb = os.open(b.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            done = 0
            while done < a.nbytes:
                want = min(PIECE, a.nbytes - done)
                na = _pread_into(fa, memoryview(buf_a)[:want], a.start + done)
                nb = _pread_into(fb, memoryview(buf_b)[:want], b.start + done)
                if buf_a[:min(na, nb)] != buf_b[:min(na, nb)]:
                    return done + next(i for i in range(min(na, nb)) if buf_a[i] != buf_b[i])
                if na != want or nb != want:
                    return done + min(na, nb)
                done += want
        finally:
            os.close(fb)
    finally:
        os.close(fa)
    return None


def _open(path: str | Path, name: str | Path) -> Any:
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # the library refusing our file is exactly what --verify is for
        raise VerifyError(f"{name}: the safetensors library cannot open the output: {exc}") from None


def _compare_range(out_bytes: Any, data: FileRange, buf: bytearray) -> int | None:
    def pieces() -> Iterator[memoryview]:
        view = memoryview(buf)
        fd = os.open(data.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            done = 0
            while done < data.nbytes:
                want = min(PIECE, data.nbytes - done)
                n = _pread_into(fd, view[:want], data.start + done)
                yield view[:n]
                if n != want:
                    return
                done += n
        finally:
            os.close(fd)
    return _compare_pieces(out_bytes, data.nbytes, pieces(), buf)


def _compare_pieces(out_bytes: Any, nbytes: int, pieces: Iterable[bytes | memoryview], buf: bytearray) -> int | None:
    """The first byte where the output differs from the source read in ``pieces`` (or None)."""
    import torch

    if out_bytes.numel() != nbytes:
        return min(out_bytes.numel(), nbytes)
    src = torch.frombuffer(buf, dtype=torch.uint8)
    done = 0
    for piece in pieces:
        n = len(piece)
        if not (isinstance(piece, memoryview) and piece.obj is buf):
            buf[:n] = piece
        diff = _first_difference(out_bytes[done:done + n], src[:n], done)
        if diff is not None:
            return diff
        done += n
    return None if done == nbytes else done


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
