"""What ``mapper convert`` writes: safetensors (the default) or a DCP folder. No torch here."""
from __future__ import annotations

from pathlib import Path

from ..errors import BadInputError

OUTPUT_FORMATS = ("safetensors", "dcp")


def is_dcp_destination(dst: Path, output_format: str | None) -> bool:
    """Whether ``dst`` is written as a DCP folder: only when asked for by name."""
    if output_format in (None, "safetensors"):
        return False
    if output_format == "dcp":
        return True
    raise BadInputError(f"{dst}: unknown output format '{output_format}'; convert writes "
                        f"{' or '.join(OUTPUT_FORMATS)}")
