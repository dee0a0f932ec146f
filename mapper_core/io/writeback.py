"""Write-behind: start the disk write of each finished stretch of a file while the next is copied.

A conversion fsyncs its output before the rename. Left alone, the kernel holds gigabytes of
dirty pages and the final fsync writes them all at the end, after the copy: the copy and the
disk take turns. Here, every ``WINDOW`` bytes written in order, ``sync_file_range`` starts
writeback of that stretch without waiting, and waits for the stretch ``DEPTH`` windows back,
so the disk writes while the next stretch is copied and the fsync at the end finds little left.
Waiting also keeps the output's dirty pages bounded (``WINDOW × (DEPTH + 1)``).

This is an optimisation only: where ``sync_file_range`` does not exist (not Linux) or fails
(a pipe, a filesystem without it), it turns itself off and the fsync does all the work. It
never makes data durable by itself; the caller's fsync does.
"""
from __future__ import annotations

import ctypes
import sys
from collections import deque

WINDOW = 64 * 1024 * 1024  # bytes per writeback request
DEPTH = 2  # windows in flight before waiting for the oldest
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4  # SYNC_FILE_RANGE_* from <fcntl.h>


def _sync_file_range():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_CALL = _sync_file_range()


class WriteBehind:
    """Tell it what was written (``wrote(offset, n)``, in any order); it keeps the disk busy behind."""

    def __init__(self, fd: int, window: int = WINDOW, depth: int = DEPTH, call=None):
        self.fd = fd
        self.window = window
        self.depth = depth
        self._call = call if call is not None else _CALL
        self._start = self._end = 0  # the stretch written since the last request
        self._pending: deque[tuple[int, int]] = deque()
        self.requests = 0  # writeback requests made (for tests and profiles)

    @property
    def active(self) -> bool:
        return self._call is not None

    def wrote(self, offset: int, n: int) -> None:
        if self._call is None or n <= 0:
            return
        if offset != self._end:  # not where the last write ended: hand over what was gathered
            self._request()
            self._start = offset
        self._end = offset + n
        if self._end - self._start >= self.window:
            self._request()

    def flush(self) -> None:
        """Start writeback of what is gathered (the caller's fsync still waits for it)."""
        self._request()

    def _request(self) -> None:
        start, n = self._start, self._end - self._start
        self._start = self._end
        if n <= 0 or self._call is None:
            return
        if not self._do(start, n, _WRITE):
            return
        self.requests += 1
        self._pending.append((start, n))
        while len(self._pending) > self.depth:
            self._do(*self._pending.popleft(), _WAIT_BEFORE | _WRITE | _WAIT_AFTER)

    def _do(self, start: int, n: int, flags: int) -> bool:
        if self._call(self.fd, start, n, flags) == 0:
            return True
        self._call = None  # not here (a pipe, an old kernel, an I/O error the fsync will report)
        self._pending.clear()
        return False
