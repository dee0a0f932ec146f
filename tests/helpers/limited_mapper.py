"""``limited_mapper(*args, cwd=...)``: ``mapper ARGS`` in a child process with a memory limit and a
timeout, for inputs a careless reader would read without end (/dev/zero) or block on (a FIFO): on
such a reader the child runs out of memory or hangs, never the test run."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from cli_runner import environment

MEMORY_LIMIT = 3 << 30


def limited_mapper(*args, cwd) -> subprocess.CompletedProcess:
    """``mapper ARGS`` in a child process that may use 3 GiB of address space and 60 s at most."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    try:
        return subprocess.run([sys.executable, "-m", "mapper_core", *map(str, args)], capture_output=True, text=True,
                              env=environment(), cwd=cwd, timeout=60, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mapper {' '.join(map(str, args))} blocked for 60 s")
