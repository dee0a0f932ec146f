"""Fixtures shared across test modules."""
from __future__ import annotations

import sys
import textwrap

import pytest


@pytest.fixture
def plugin_modules(tmp_path, monkeypatch):
    """Write importable plugin modules into tmp_path; forget them from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)
