"""Header-only commands run with the cycle collector paused, and leave its state as they found it."""
from __future__ import annotations

import gc

import pytest

import mapper_core.cli.convert
import mapper_core.cli.validate
from mapper_core.cli import main


def _recording(module, seen):
    def run(args, ctx):
        seen.append(gc.isenabled())
        return 0
    run.__module__ = module.__name__
    return run


@pytest.mark.parametrize("module, argv, paused", [
    (mapper_core.cli.validate, ["validate", "r.yaml"], True),
    (mapper_core.cli.convert, ["convert", "a.safetensors", "b.safetensors"], False),  # may run torch's code
])
def test_the_collector_is_paused_only_for_header_only_commands(monkeypatch, module, argv, paused):
    seen: list[bool] = []
    monkeypatch.setattr(module, "run", _recording(module, seen))
    assert gc.isenabled()
    assert main(argv) == 0
    assert seen == [not paused] and gc.isenabled()
    gc.disable()
    try:
        assert main(argv) == 0 and not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
