"""Verify written safetensors files: every tensor's bytes against an independent read of its source.

Bytes are compared, not values, so NaN payloads, ``-0.0`` and every dtype count. What is compared:

- the output's bytes, read with plain ``pread`` (no mapping: memory stays at two 8 MiB buffers),
  at the offsets that mapper-core's strict header reader (which shares no code with the writer)
  finds in the written header;
- the source, read again independently: raw byte ranges from the source file, a torch zip's
  records through the zip's own directory (not torch's mapping), tensors asked for again;
- and, where the safetensors library is installed, the library opens the output and must see the
  same keys, dtypes and shapes (it accepts what the strict reader accepts; the differential tests
  hold the two to the same offsets).

:func:`verify_file` checks a finished file. :class:`StreamVerifier` does the same work on a
background thread while the file is still being written: each tensor is compared as soon as
a file's writer is done with it (file reads and comparisons release the interpreter, so it
overlaps writing the next file, the final fsync and the source hash), and
:meth:`StreamVerifier.finish` then checks that the header, read back, puts every tensor where
it was compared. Comparing after the file's last data write, not after each tensor's, means a
stray write anywhere in the data would be caught too.
"""
from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import CheckpointError, VerifyError
from ..specs import shown_shape
from .formats.safetensors_header import SafetensorsHeader
from .formats.torch_archive import RecordRange
from .formats.writer import Entry, FileRange
from .inspection import counted

PIECE = 8 * 1024 * 1024
Step = Callable[[int, str], None]


def verify_file(path: str | Path, entries: Sequence[Entry], shown_as: str | Path | None = None,
                step: Step | None = None) -> int:
    """Check that ``path`` holds exactly ``entries`` (keys, dtypes, shapes, bytes); returns the count.

    ``shown_as`` names the file in errors (e.g. the destination while ``path`` is a temporary);
    ``step(nbytes, key)`` is called after each tensor is compared.
    Raises :class:`~mapper_core.errors.VerifyError` naming the first key that differs.
    """
    name = shown_as or path
    header = read_back(path, entries, name)
    comparer = Comparer(path, name)
    try:
        for e in entries:
            begin, _ = header.offsets[e.key]
            comparer.compare(e, header.data_start + begin)
            if step:
                step(e.spec.nbytes, e.key)
    finally:
        comparer.close()
    return len(entries)


def read_back(path: str | Path, entries: Sequence[Entry], name: str | Path) -> SafetensorsHeader:
    """The output's header as the strict reader sees it, checked against ``entries`` and the library."""
    from .formats.safetensors_format import read_header

    try:
        header = read_header(path)
    except CheckpointError as exc:
        raise VerifyError(f"{name}: the output cannot be read back: {exc}") from None
    _same_keys(set(header.specs), entries, name)
    for e in entries:
        spec = header.specs[e.key]
        _same_spec(name, e, spec.dtype, tuple(spec.shape))
    _library_agrees(path, entries, name)
    return header


def _library_agrees(path: str | Path, entries: Sequence[Entry], name: str | Path) -> None:
    """The official library opens the output and sees the same tensors (skipped where it is not installed)."""
    import importlib.util

    try:
        from safetensors import safe_open
    except ModuleNotFoundError:
        return
    # Only dtypes and shapes are asked for, nothing is decoded; the framework is what the library
    # imports on opening: numpy is far cheaper to import than torch (~1 s and ~200 MB).
    framework = "numpy" if importlib.util.find_spec("numpy") else "pt" if importlib.util.find_spec("torch") else None
    if framework is None:
        return
    try:
        with safe_open(str(path), framework=framework) as f:
            _same_keys(set(f.keys()), entries, name)
            for e in entries:
                s = f.get_slice(e.key)
                _same_spec(name, e, s.get_dtype(), tuple(s.get_shape()))
    except VerifyError:
        raise
    except Exception as exc:  # the library refusing our file is exactly what --verify is for
        raise VerifyError(f"{name}: the safetensors library cannot open the output: {exc}") from None


def _same_keys(stored: set[str], entries: Sequence[Entry], name: str | Path) -> None:
    expected = {e.key for e in entries}
    if stored != expected:
        extra, missing = sorted(stored - expected), sorted(expected - stored)
        what = f"missing '{missing[0]}'" if missing else f"unexpected '{extra[0]}'"
        raise VerifyError(f"{name}: holds {counted(len(stored), 'tensor')}, expected {len(expected):,} ({what})")


def _same_spec(name: str | Path, e: Entry, dtype: str, shape: tuple) -> None:
    if (dtype, shape) != (e.spec.dtype, tuple(e.spec.shape)):
        raise VerifyError(f"{name}: tensor '{e.key}' reads back as {dtype} {shown_shape(shape)}, expected "
                          f"{e.spec.dtype} {shown_shape(e.spec.shape)}")


class Comparer:
    """Compares tensors of one output file with their sources through two fixed buffers."""

    def __init__(self, path: str | Path, name: str | Path):
        self.name = name
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self.out, self.src = bytearray(PIECE), bytearray(PIECE)

    def close(self) -> None:
        os.close(self.fd)

    def compare(self, e: Entry, offset: int) -> None:
        """Raise VerifyError unless the output's ``e.spec.nbytes`` bytes at ``offset`` equal e's source."""
        nbytes = e.spec.nbytes
        done = 0
        for piece in _source_pieces(e, self.src, self.name):
            n = min(len(piece), nbytes - done)
            got = _pread_into(self.fd, memoryview(self.out)[:n], offset + done)
            if not _equal(self.out, got, piece, n):
                _damaged(self.name, e, done + _first_difference(memoryview(self.out)[:got], piece[:n]))
            done += n
            if done >= nbytes:
                break
        if done != nbytes:  # the source (or the output) ended early
            _damaged(self.name, e, done)


def _equal(out: bytearray, got: int, piece: memoryview, n: int) -> bool:
    if got != n:
        return False
    if n == len(out) and isinstance(piece, memoryview) and isinstance(piece.obj, bytearray) and len(piece.obj) == n:
        return out == piece.obj  # two whole buffers: one memcmp
    return memoryview(out)[:n].tobytes() == piece[:n].tobytes()


def _first_difference(a: memoryview, b: memoryview) -> int:
    n = min(len(a), len(b))
    step = 4096
    for i in range(0, n, step):
        if a[i:i + step].tobytes() != b[i:i + step].tobytes():
            return i + next(j for j in range(min(step, n - i)) if a[i + j] != b[i + j])
    return n


def _source_pieces(e: Entry, buf: bytearray, name: str | Path) -> Iterator[memoryview]:
    """The source's bytes, read independently of the writer, as views of ``buf`` where possible."""
    view = memoryview(buf)
    data = e.data
    if isinstance(data, FileRange):
        fd = os.open(data.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            done = 0
            while done < data.nbytes:
                want = min(PIECE, data.nbytes - done)
                n = _pread_into(fd, view[:want], data.start + done)
                if n == 0:
                    return
                yield view[:n]
                done += n
        finally:
            os.close(fd)
        return
    if isinstance(data, RecordRange):  # a torch zip's record, read through the zip's own directory
        for piece in data.pieces(PIECE, buf):
            yield piece if isinstance(piece, memoryview) else memoryview(piece)
        return
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        raise VerifyError(f"{name}: tensor '{e.key}' was computed from a tensor; verifying it needs "
                          "torch: pip install 'mapper-core[torch]'") from None
    from .formats.pieces import contiguous_pieces
    from .formats.writer import tensor_bytes

    # only read (it may be the caller's); a strided view is made contiguous a piece at a time
    for part in contiguous_pieces(data().detach().cpu(), PIECE):
        source = tensor_bytes(part)
        for i in range(0, len(source), PIECE):
            n = min(PIECE, len(source) - i)
            view[:n] = source[i:i + n]
            yield view[:n]
        source.release()
        del part, source


def _damaged(name: str | Path, e: Entry, offset: int) -> None:
    source = (f"{e.data.path} bytes {e.data.start}..{e.data.end}" if isinstance(e.data, FileRange)
              else "its source tensor")
    raise VerifyError(f"{name}: tensor '{e.key}' differs from {source} at byte {offset}; the output is "
                      "damaged, do not use it (re-run the conversion and report a bug if it repeats)")


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    got = 0
    while got < len(view):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[got:]], offset + got)
        else:
            data = os.pread(fd, len(view) - got, offset + got)
            view[got:got + len(data)] = data
            n = len(data)
        if n == 0:
            break
        got += n
    return got


class StreamVerifier:
    """Verifies tensors on a background thread once the writer is done with their file (``written``), then,
    in :meth:`finish`, that each file's header reads back with every tensor where it was compared.

    ``originals`` maps a key to the entry to compare against when it is not the written one (a
    torch file's record read through the zip). Tensor sources (callables) are compared on the
    caller's thread in :meth:`finish`: a reader need not be safe to use from two threads.
    """

    def __init__(self, originals: dict[str, Entry] | None = None):
        self.originals = originals or {}
        self._queue: queue.Queue = queue.Queue()
        self._compared: dict[Path, dict[str, int]] = {}
        self._later: list[tuple[Path, str | Path, Entry, int]] = []
        self._comparers: dict[Path, Comparer] = {}
        self._error: BaseException | None = None
        self.done = 0  # bytes compared so far (read by the caller's thread for progress)
        self._thread = threading.Thread(target=self._run, name="mapper-verify", daemon=True)
        self._thread.start()

    def written(self, path: Path, shown_as: str | Path, e: Entry, offset: int) -> None:
        """``e`` now lies in ``path`` (a temporary, shown as ``shown_as``) at byte ``offset``."""
        original = self.originals.get(e.key, e)
        self._compared.setdefault(Path(path), {})[e.key] = offset
        if isinstance(original.data, (FileRange, RecordRange)):
            self._queue.put((Path(path), shown_as, original, offset))
        else:
            self._later.append((Path(path), shown_as, original, offset))

    def finish(self, files: Sequence[tuple[Path, str | Path, Sequence[Entry]]],
               waiting: Step | None = None) -> int:
        """Wait for the comparisons, compare the tensor sources, read each header back; the count."""
        self._queue.put(None)
        seen = 0
        while self._thread.is_alive():
            self._thread.join(0.25)
            if waiting is not None and self.done > seen:
                waiting(self.done - seen, "")
                seen = self.done
        if waiting is not None and self.done > seen:
            waiting(self.done - seen, "")
        if self._error is not None:
            raise self._error
        try:
            for path, shown_as, e, offset in self._later:
                self._comparer(path, shown_as).compare(e, offset)
                if waiting is not None:
                    waiting(e.spec.nbytes, e.key)
        finally:
            self.close()
        checked = 0
        for path, shown_as, entries in files:
            header = read_back(path, entries, shown_as)
            compared = self._compared.get(Path(path), {})
            for e in entries:
                at = header.data_start + header.offsets[e.key][0]
                if compared.get(e.key) != at:  # the header must point where the bytes were checked
                    raise VerifyError(f"{shown_as}: tensor '{e.key}' is recorded at byte {at} of the output, "
                                      f"but was written at {compared.get(e.key)}; the output is damaged")
            checked += len(entries)
        return checked

    def close(self) -> None:
        """Stop the thread (if still running) and close the files; idempotent."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        for c in self._comparers.values():
            c.close()
        self._comparers.clear()

    def _comparer(self, path: Path, shown_as: str | Path) -> Comparer:
        c = self._comparers.get(path)
        if c is None:
            c = self._comparers[path] = Comparer(path, shown_as)
        return c

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain: the first error is the one reported
            path, shown_as, e, offset = item
            try:
                self._comparer(path, shown_as).compare(e, offset)
                self.done += e.spec.nbytes
            except BaseException as exc:  # reported by finish(), in the caller's thread
                self._error = exc
