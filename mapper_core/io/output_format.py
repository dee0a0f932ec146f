"""What ``mapper convert`` writes: safetensors (the default) or a DCP folder. No torch here."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadInputError

OUTPUT_FORMATS = ("safetensors", "dcp")
FILE_SUFFIXES = (".safetensors", ".json", ".pt", ".pth", ".bin", ".ckpt")  # a DCP folder named so is a slip


def is_dcp_destination(dst: Path, output_format: str | None) -> bool:
    """Whether ``dst`` is written as a DCP folder: only when asked for by name."""
    if output_format in (None, "safetensors"):
        return False
    if output_format == "dcp":
        return True
    raise BadInputError(f"{dst}: unknown output format '{output_format}'; convert writes "
                        f"{' or '.join(OUTPUT_FORMATS)}")


def refuse_dcp_named_like_a_file(dst: str | os.PathLike, output_format: str | None,
                                 asked_as: str = "output_format='dcp'") -> None:
    """Refuse a DCP folder named like a checkpoint file (``x.safetensors``): surely a slip, before
    anything is read or written. ``asked_as`` is how the caller spelled the DCP choice (the CLI:
    ``--output-format dcp``)."""
    name = os.fspath(dst)
    if output_format == "dcp" and name.lower().rstrip("/" + os.sep).endswith(FILE_SUFFIXES):
        raise BadInputError(f"{name}: {asked_as} writes a folder (.metadata and data files), but this name "
                            f"is a checkpoint file's; give a folder name (e.g. out-dcp), or drop {asked_as} "
                            "to write safetensors")
