"""Root conftest: lets the torch-free part of the suite run where torch is not installed.

`pip install mapper-core` (no extras) is the header-only tool. CI installs it on Python 3.10
and 3.13 without torch and runs the suite there: a test module that imports torch (or the
SyncNet plugin's models) at module level is not collected, and a test that needs torch
inside its body is marked ``needs_torch``. That run proves the header-only layers need no torch.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

HAVE_TORCH = importlib.util.find_spec("torch") is not None
_TORCH_MODULES = ("torch", "numpy", "safetensors.torch")


def _imports_torch(path: Path) -> bool:
    """True when the module imports torch (or numpy) at module level."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return False
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        if any(n == m or n.startswith(m + ".") for n in names for m in _TORCH_MODULES):
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if HAVE_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return True if _imports_torch(collection_path) else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_torch: the test needs torch (skipped where it is not installed)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAVE_TORCH:
        return
    skip = pytest.mark.skip(reason="needs torch: pip install 'mapper-core[torch]'")
    for item in items:
        if item.get_closest_marker("needs_torch"):
            item.add_marker(skip)
