"""What a DCP checkpoint replaced with ``force`` leaves in its folder, and removing it.

``dcp.save`` on N ranks writes ``__0_0.distcp`` … ``__{N-1}_0.distcp``; mapper writes one data
file, and the atomic commit replaces only the names it writes. The replaced checkpoint's other
data files would stay, named by no ``.metadata``. :func:`earlier_data_files` reads, before the
write, which data files the ``.metadata`` about to be replaced names (read as any DCP source is:
nothing in it runs); :func:`remove_earlier` removes those the new checkpoint does not use, once its
``.metadata`` is in place. Until that commit point the earlier checkpoint is whole (a commit that
fails puts back what it replaced), and after it those files belong to no checkpoint: a run killed
between the two leaves them, and the next run to the folder names them.

Only the data files the replaced ``.metadata`` named are removed, and of those only the ones named
as ``dcp.save`` names its data files (``__0_0.distcp``): a ``.metadata`` is input like any other,
and one that names ``config.json`` or ``model.safetensors`` as a data file must not make
``force`` delete it. Never a source file. Anything else in the folder that is not the new
checkpoint's is named by :func:`warn_others` and left alone.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import CheckpointError, CheckpointWarning
from ..text import listed
from .atomic import TEMP_SUFFIX, _same_file
from .formats.dcp_metadata import METADATA_NAME, read_layout

SHOWN = 3  # names listed in a warning; the rest are counted
_DATA_FILE = re.compile(r"__\d+_\d+\.distcp")  # what dcp.save's FileSystemWriter names its data files


def earlier_data_files(dst: Path) -> tuple[str, ...]:
    """The data files named by the ``.metadata`` in ``dst`` (none if there is none, or it is unreadable:
    then nothing is removed, and what is left is named afterwards)."""
    meta = dst / METADATA_NAME
    if not meta.is_file():
        return ()
    try:
        return read_layout(meta).files
    except CheckpointError:
        return ()


def remove_earlier(dst: Path, names: Iterable[str], written: Sequence[Path], sources: Sequence[Path]) -> list[Path]:
    """Remove the earlier checkpoint's data files ``names`` that are not among ``written`` and are
    named as DCP data files (call only after the commit); returns what was removed. A file that
    cannot be removed, or is named otherwise, stays, and is named by :func:`warn_others`."""
    keep = {p.name for p in written}
    removed = []
    for name in names:
        path = dst / name
        if (name in keep or not _DATA_FILE.fullmatch(name) or not os.path.isfile(path)
                or any(_same_file(path, s) for s in sources)):
            continue
        try:
            os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def warn_others(dst: Path, written: Sequence[Path]) -> None:
    """Warn (:class:`CheckpointWarning`) about what ``dst`` holds beside the checkpoint just written:
    data files of an earlier checkpoint that no ``.metadata`` names, and anything else. Temporaries
    are left out (killed runs' are reported as such)."""
    try:
        names = sorted(os.listdir(dst))
    except OSError:
        return
    keep = {p.name for p in written}
    others = [n for n in names if n not in keep and not n.endswith(TEMP_SUFFIX)]
    data = [n for n in others if _DATA_FILE.fullmatch(n)]
    rest = [n + ("/" if os.path.isdir(dst / n) else "") for n in others if not _DATA_FILE.fullmatch(n)]
    if data:
        warnings.warn(CheckpointWarning(
            f"{dst}: {_counted(data, 'data file')} of an earlier checkpoint, named by no .metadata, "
            f"{'is' if len(data) == 1 else 'are'} still there: {_listed(data)}; the new .metadata does not use "
            f"{'it' if len(data) == 1 else 'them'}: delete {'it' if len(data) == 1 else 'them'} (with --force, "
            "mapper removes only the data files the replaced .metadata named)"), stacklevel=2)
    if rest:
        warnings.warn(CheckpointWarning(
            f"{dst}: also holds {_counted(rest, 'file')} that {'is' if len(rest) == 1 else 'are'} not part of the "
            f"DCP checkpoint written: {_listed(rest)}; left as {'it is' if len(rest) == 1 else 'they are'}"),
            stacklevel=2)


def _counted(names: list[str], what: str) -> str:
    return f"{len(names)} {what}{'s' if len(names) != 1 else ''}"


def _listed(names: list[str]) -> str:
    return listed(names, SHOWN)
