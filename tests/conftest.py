"""Fixtures shared across test modules, and the settings that keep a test run out of the repository."""
from __future__ import annotations

import os
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import cli_runner

# Hypothesis keeps its example database and caches (examples/, constants/, unicode_data/) in
# ./.hypothesis, inside the repository, unless told otherwise; it reads this on first use.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "mapper-core-hypothesis"))

# pytest-xdist workers share the cores: torch's own thread pool in each of them would fight
# the other workers for the same cores (the suite ran ~2x slower on 2 cores). Set before any
# test module imports torch; an OMP_NUM_THREADS you set yourself wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def schema_check_agrees_with_jsonschema():
    """Every rules document any test loads gets both verdicts: schema_check's fast yes/no and
    jsonschema's; a test whose document they disagree on fails (tests/rules/test_schema_check.py)."""
    from jsonschema import Draft202012Validator

    from mapper_core.rules import schema

    reference, fast = Draft202012Validator(schema.load_schema()), schema.conforms

    def both(data):
        answer = fast(data)
        if answer != reference.is_valid(data):
            raise AssertionError(f"schema_check says {answer}, jsonschema {not answer}, on {data!r:.2000}")
        return answer

    both.__wrapped__ = fast  # for the tests of a "no" that is not jsonschema's (Decimal values, ...)
    schema.conforms = both
    yield
    schema.conforms = fast


@pytest.fixture
def mapper():
    """Run the ``mapper`` command line in-process: ``mapper("plan", src, "--rules", r)`` → CompletedProcess."""
    return cli_runner.mapper


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
