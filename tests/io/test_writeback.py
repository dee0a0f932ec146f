"""Write-behind: the disk is asked to write each finished stretch while the next is copied."""
from __future__ import annotations

import os
import sys

import pytest

from mapper_core.io.writeback import WriteBehind

WAIT = 1 | 2 | 4  # wait for earlier writeback, write, wait for this one


def recorder(calls, fail_at=None):
    def call(fd, start, n, flags):
        calls.append((start, n, flags))
        return -1 if fail_at is not None and len(calls) >= fail_at else 0
    return call


def test_each_window_is_started_and_the_one_depth_back_is_waited_for():
    calls = []
    behind = WriteBehind(7, window=100, depth=2, call=recorder(calls))
    for i in range(10):  # 40-byte writes, in order
        behind.wrote(i * 40, 40)
    behind.flush()
    starts = [(s, n) for s, n, f in calls if f == 2]
    waits = [(s, n) for s, n, f in calls if f == WAIT]
    assert starts == [(0, 120), (120, 120), (240, 120), (360, 40)]
    assert waits == [(0, 120), (120, 120)]  # never more than two windows in flight
    assert behind.requests == 4


def test_a_jump_hands_over_what_was_gathered():
    calls = []
    behind = WriteBehind(7, window=1000, call=recorder(calls))
    behind.wrote(0, 10)
    behind.wrote(500, 10)  # e.g. the header rewritten at the start, or a shard's next range
    behind.flush()
    assert [(s, n) for s, n, _ in calls] == [(0, 10), (500, 10)]


def test_a_failing_call_turns_it_off_for_good():
    calls = []
    behind = WriteBehind(7, window=10, call=recorder(calls, fail_at=1))
    behind.wrote(0, 10)
    behind.wrote(10, 10)
    behind.flush()
    assert len(calls) == 1 and not behind.active


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_on_linux_a_real_file_is_written_behind(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        behind = WriteBehind(fd, window=1 << 16)
        for i in range(8):
            os.pwrite(fd, b"x" * (1 << 16), i << 16)
            behind.wrote(i << 16, 1 << 16)
        behind.flush()
        assert behind.active and behind.requests == 8
    finally:
        os.close(fd)
    assert (tmp_path / "f").stat().st_size == 8 << 16
