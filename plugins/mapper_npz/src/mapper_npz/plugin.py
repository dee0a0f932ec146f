"""The plugin's hook: the ``npz`` format. Importing this module imports neither numpy nor torch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mapper_core.plugins import Format, hookimpl


def _open(path: Path, **options: Any):
    from .reader import NpzReader  # numpy on first use

    return NpzReader(path, allow_expansion=bool(options.get("allow_expansion")))


def _sniff(path: Path) -> bool:
    from .reader import sniff_npz

    return sniff_npz(path)


@hookimpl
def mapper_formats() -> list[Format]:
    return [Format("npz", (".npz",), open=_open, sniff=_sniff,
                   description="NumPy / MLX .npz archives; specs from the .npy headers, no pickle",
                   options={"allow_expansion": "read compressed arrays that inflate past max(256 MiB, 4x the "
                                               "file's size)"})]
