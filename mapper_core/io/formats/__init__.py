"""Built-in checkpoint formats. Importing this package does not import torch.

Reader options (``trust_pickle``, ``allow_expansion``, ``unwrap``, ``strip_prefix``,
``allow_outside_shards``) may be passed to every built-in format's ``open``; formats they do not concern ignore them, so a caller need not
know the format in advance.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from ... import arguments
from .base import Format, Reader, choose_format
from .safetensors_format import SUFFIXES as _ST_SUFFIXES
from .safetensors_format import open_safetensors, sniff_safetensors
from .spec_json import SUFFIXES as _SPEC_SUFFIXES
from .spec_json import open_spec_json, sniff_spec_json

# The torch and DCP readers (their pickle, zip and metadata readers) are imported only when a
# file is asked about or opened as one: a safetensors command never loads them (start-up time).
# Their suffixes are spelled here; tests/io/formats/test_registry.py checks them against the modules.
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".model", ".ckpt")
_DCP_SUFFIXES = (".metadata",)
_LAZY = {"open_torch": "torch_format", "sniff_torch": "torch_pickle", "open_dcp": "dcp", "sniff_dcp": "dcp"}


def _lazy(name: str) -> Callable[..., Any]:
    """``name`` from its reader module, imported on the first call."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)(*args, **kwargs)
    call.__name__ = call.__qualname__ = name
    return call


def _sniff_torch(path: Path) -> bool:
    return not path.is_dir() and _lazy("sniff_torch")(path)  # a folder is never one: no import to say so


def _sniff_dcp(path: Path) -> bool:  # only a folder with a .metadata, or that file, can be one
    return (path.name == ".metadata" or os.path.lexists(path / ".metadata")) and _lazy("sniff_dcp")(path)


def __getattr__(name: str) -> Any:  # `from mapper_core.io.formats import open_torch` still works
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


TORCH_OPTIONS = {
    "trust_pickle": "load with weights_only=False (runs code in the file; warns)",
    "allow_expansion": "read a file that grows past max(256 MiB, 4x its size) in memory or output",
    "unwrap": "dotted path of the state dict inside the checkpoint ('' = top level)",
    "strip_prefix": "key prefix to strip ('' = none; default strips 'module.' when every key has it)",
}


def builtin_formats() -> list[Format]:
    """The built-in formats, in priority order."""
    return [
        Format("safetensors", _ST_SUFFIXES, open_safetensors, sniff_safetensors,
               "safetensors, single file or sharded (*.safetensors.index.json); read lazily",
               {"allow_outside_shards": "let an index name shards whose real path is outside its folder"}),
        Format("torch", _TORCH_SUFFIXES, _lazy("open_torch"), _sniff_torch,
               "torch.save pickles, zip or legacy, single file or sharded (*.bin.index.json); loaded with weights_only=True", dict(TORCH_OPTIONS)),
        Format("dcp", _DCP_SUFFIXES, _lazy("open_dcp"), _sniff_dcp,
               "torch.distributed.checkpoint folder (.metadata + *.distcp); metadata read without running code",
               {"allow_outside_shards": "let .metadata name data files whose real path is outside the folder"}),
        Format("spec-json", _SPEC_SUFFIXES, open_spec_json, sniff_spec_json,
               "JSON of key → {dtype, shape}; headers only, no tensor data"),
    ]


def open_checkpoint(path: str | Path, format: str | None = None,
                    formats: Sequence[Format] | None = None, **options: Any) -> Reader:
    """Open ``path`` with the named format, else the detected one (built-in formats unless ``formats=``;
    ``mapper_core.plugins.open_checkpoint`` also sees the plugins' formats)."""
    arguments.path(path, "open_checkpoint", "path")
    fmt = choose_format(path, builtin_formats() if formats is None else formats, format)
    return fmt.open(Path(path), **options)


__all__ = ["Format", "Reader", "builtin_formats", "choose_format", "open_checkpoint"]
