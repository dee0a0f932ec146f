"""Aliased tensors in safetensors files written by mapper-core, and a loader that restores them.

safetensors cannot say "this key is the same tensor as that one". When a torch checkpoint
holds tied weights (two keys, one storage, the same view), ``mapper convert`` stores the
canonical tensor once and records ``{alias: canonical}`` as JSON under the metadata key
``mapper.aliases`` (in every shard's header and in the index's ``metadata``).
:func:`load_safetensors` gives every key back, each alias as the *same* tensor object as
its canonical, so tying survives the round trip. Views that are not identical (a slice of
another tensor, a transposed copy) are not aliases: each is written with its own bytes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ...errors import CheckpointError

ALIASES_KEY = "mapper.aliases"


def encode_aliases(aliases: Mapping[str, str]) -> str:
    return json.dumps({k: aliases[k] for k in sorted(aliases)}, separators=(",", ":"), ensure_ascii=False)


def decode_aliases(metadata: Mapping[str, Any], origin: str | Path) -> dict[str, str]:
    """The alias map recorded in ``metadata`` (empty if none); CheckpointError if malformed."""
    raw = metadata.get(ALIASES_KEY)
    if raw is None:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise CheckpointError(f"{origin}: metadata '{ALIASES_KEY}' is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise CheckpointError(f"{origin}: metadata '{ALIASES_KEY}' must be a JSON object of alias key → stored key")
    return value


def restore_aliases(tensors: dict[str, Any], aliases: Mapping[str, str], origin: str | Path) -> dict[str, Any]:
    """Add every alias to ``tensors`` as the very object of its canonical key."""
    for alias, canonical in aliases.items():
        if canonical not in tensors:
            raise CheckpointError(f"{origin}: alias '{alias}' refers to '{canonical}', which the file does not hold")
        if alias in tensors:
            raise CheckpointError(f"{origin}: alias '{alias}' is also stored as a tensor; the file is inconsistent")
        tensors[alias] = tensors[canonical]
    return tensors


def load_safetensors(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Every tensor of a safetensors file or ``*.safetensors.index.json``, aliases restored."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.name.lower().endswith(".safetensors.index.json"):
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot read the index: {exc}") from None
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{path}: expected an object with a 'weight_map'")
        tensors: dict[str, Any] = {}
        for shard in dict.fromkeys(weight_map.values()):
            if not isinstance(shard, str) or Path(shard).name != shard:
                raise CheckpointError(f"{path}: weight_map names shard {shard!r}; expected a file name beside the index")
            tensors.update(load_file(path.parent / shard, device=device))
        meta = index.get("metadata") or {}
        return restore_aliases(tensors, decode_aliases(meta, path), path)
    tensors = load_file(path, device=device)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    return restore_aliases(tensors, decode_aliases(meta, path), path)
