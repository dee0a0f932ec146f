"""The cycle collector is held off inside header-only work and handed back as it was."""
from __future__ import annotations

import gc
import json
import struct

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.gc_pause import gc_paused, pauses_gc
from mapper_core.io.formats.safetensors_header import read_header


@pytest.fixture
def restore_gc():
    enabled = gc.isenabled()
    yield
    gc.enable() if enabled else gc.disable()


@pytest.mark.parametrize("before", [True, False])
def test_state_comes_back_as_it_was_even_on_error(restore_gc, before):
    gc.enable() if before else gc.disable()
    with pytest.raises(ZeroDivisionError):
        with gc_paused():
            assert not gc.isenabled()
            with gc_paused():  # nested: the inner block must not turn it back on
                pass
            assert not gc.isenabled()
            1 / 0
    assert gc.isenabled() is before


def test_decorated_function_runs_paused_and_keeps_its_name(restore_gc):
    seen = []

    @pauses_gc
    def probe(x, *, y):
        """doc"""
        seen.append(gc.isenabled())
        return x + y

    gc.enable()
    assert probe(1, y=2) == 3 and seen == [False] and gc.isenabled()
    assert probe.__name__ == "probe" and probe.__doc__ == "doc"


def test_reading_a_header_leaves_the_collector_as_it_was(tmp_path, restore_gc):
    header = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    good = tmp_path / "good.safetensors"
    good.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 2) + b"[]")
    gc.enable()
    assert list(read_header(good).specs) == ["a"] and gc.isenabled()
    with pytest.raises(CheckpointError):
        read_header(bad)
    assert gc.isenabled()
