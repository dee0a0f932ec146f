"""The plugin's hooks: the ``onnx`` format and the ``torch-export`` rule set. No onnx import here."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from mapper_core.plugins import Format, RuleSetSource, hookimpl


def _open(path: Path, **options: Any):
    from .reader import OnnxReader  # onnx and protobuf on first use

    return OnnxReader(path)


@hookimpl
def mapper_formats() -> list[Format]:
    return [Format("onnx", (".onnx",), open=_open,
                   description="ONNX models: their initializers, external data files included")]


@hookimpl
def mapper_rule_sets() -> list[RuleSetSource]:
    return [RuleSetSource(
        "torch-export",
        "torch.onnx.export's initializers back to the module's state_dict names (folded onnx::* constants skipped)",
        path=files(__package__) / "rules" / "torch-export.yaml",
    )]
