"""What a forked worker of :mod:`.parallel` does to itself before it writes a shard."""
from __future__ import annotations

import os
import signal
import sys


def prepare_worker() -> None:
    """Die with the parent (Linux), send stdout to stderr, keep torch to one thread."""
    if sys.platform.startswith("linux"):
        _die_with_parent()
    _stdout_to_stderr()
    _one_thread()


def _die_with_parent() -> None:
    """Linux: this worker gets SIGTERM when the process that forked it dies (even by SIGKILL), so
    no orphan keeps writing shards nobody waits for; its temporary file is then removed or named."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _stdout_to_stderr() -> None:
    """In a forked worker: whatever writes to stdout (a plugin's print, a C library's printf, a write to
    fd 1) goes to stderr, as the CLI sends what is not its report there: a worker never writes the
    report, and ``--json`` output must stay one document. Done on the file descriptor too, which the
    parent cannot do (its fd 1 carries the report)."""
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr (fd 2 closed): then no stdout either
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        except OSError:
            pass
    sys.stdout = sys.stderr  # Python's writes, whatever object the parent's sys.stdout was


def _one_thread() -> None:
    """In a forked worker: torch's thread pool (if torch is loaded) runs on one thread; the
    workers themselves are the parallelism, and OpenMP pools do not survive a fork."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
