"""The fuzz script's smoke run: 500 mutated checkpoints through the real CLI (in-process).

The full run is by hand (``tests/fuzz/fuzz_safetensors.py --cases 10000``; figures in
docs/formats.md); this keeps the script working and catches the commonest regressions.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.needs_torch, pytest.mark.slow]


def load_fuzz():
    path = Path(__file__).with_name("fuzz_safetensors.py")
    spec = importlib.util.spec_from_file_location("fuzz_safetensors", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_500_mutated_checkpoints_never_crash_hang_or_write_unreadable_files():
    figures = load_fuzz().fuzz(500, seed=20261130, timeout=30, log=None)
    assert figures.cases >= 490
    report = figures.tracebacks + figures.hangs + figures.bad_exits + figures.unreadable
    assert not report, "\n---\n".join(report[:5])
    # the mutations reach every outcome: clean runs, refusals, and outputs read back
    assert figures.exits.get(0, 0) > 25 and figures.exits.get(2, 0) > 250 and figures.outputs_checked > 10
