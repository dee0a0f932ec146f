"""Sharded safetensors output: the size limit (``--max-shard-size``), how tensors are split into
shards (as huggingface_hub splits them), the shards' names and the index file."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ...errors import BadInputError
from .entries import EntryColumns, entry_sizes

if TYPE_CHECKING:
    from .writer import Entry


def split_shards(entries: Sequence[Entry], max_bytes: int | None) -> list[Sequence[Entry]]:
    """Groups of at most ``max_bytes`` tensor bytes, exactly as huggingface_hub's
    ``split_torch_state_dict_into_shards`` makes them: tensors are taken in order and fill the
    current shard until the next would tip it over the limit; a tensor larger than the limit
    gets a shard of its own at once, and the current shard goes on filling after it.
    ``None`` → one group."""
    if not isinstance(entries, EntryColumns):
        entries = list(entries)
    if max_bytes is None:
        return [entries]
    shards: list[list[int]] = []  # positions, so columns stay columns
    current: list[int] = []
    size = 0
    for i, n in enumerate(entry_sizes(entries)):
        if n > max_bytes:
            shards.append([i])
            continue
        if size + n > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current or not shards:
        shards.append(current)
    if isinstance(entries, EntryColumns):
        return [entries.take(shard) for shard in shards]
    return [[entries[i] for i in shard] for shard in shards]


_MAX_SIZE = 2**63  # a file's size is a signed 64-bit number
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_size(text: str | int) -> int:
    """Bytes from ``"500MB"`` (10^6), ``"2GiB"`` (2^30), ``"1.5GB"``, ``"700B"``, or an int of bytes.

    A string needs its unit: ``"500"`` is refused, because a missing unit (500 meant as MB)
    silently made hundreds of 500-byte shards; ``"500B"`` says bytes on purpose.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _SIZE_RE.fullmatch(str(text))
        if not m:
            raise BadInputError(
                f"size {text!r}: expected a number with a unit such as 500MB, 5GB or 2GiB (or 700B for bytes)"
            )
        if not m.group(2):
            raise BadInputError(
                f"size {text!r} has no unit; write it with one, e.g. {m.group(1)}MB, 2GiB, or {m.group(1)}B "
                "if you really mean bytes"
            )
        unit = (m.group(2) or "").lower()
        unit = unit[:-1] if unit.endswith("b") else unit
        number = float(m.group(1)) * _UNITS[unit]  # 310 digits are a float's infinity
        value = int(number) if number < _MAX_SIZE else _MAX_SIZE
    if value <= 0:
        raise BadInputError(f"size {text!r}: must be more than 0 bytes")
    if value >= _MAX_SIZE:
        shown = repr(text) if len(str(text)) <= 40 else f"'{str(text)[:20]}...' ({len(str(text))} characters)"
        raise BadInputError(f"size {shown}: more bytes than a file can hold (2^63); give a size such as 5GB, or leave "
                            "the option out for one file")
    return value


def shard_names(dst: Path, count: int) -> tuple[list[Path], Path]:
    """Hugging Face's names: ``model.safetensors`` → ``model-00001-of-00003.safetensors`` …
    and ``model.safetensors.index.json``, in ``dst``'s folder."""
    stem = _stem(dst)
    shards = [dst.parent / f"{stem}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    return shards, dst.parent / f"{stem}.safetensors.index.json"


def _stem(dst: Path) -> str:
    name = dst.name
    for suffix in (".safetensors.index.json", ".safetensors"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def index_json(weight_map: Mapping[str, str], total_size: int, metadata: Mapping[str, str]) -> bytes:
    """The ``*.safetensors.index.json`` text: ``metadata`` (with ``total_size``) and a sorted ``weight_map``."""
    meta: dict[str, Any] = {"total_size": total_size}
    meta.update({k: metadata[k] for k in sorted(metadata)})
    body = {"metadata": meta, "weight_map": {k: weight_map[k] for k in sorted(weight_map)}}
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
