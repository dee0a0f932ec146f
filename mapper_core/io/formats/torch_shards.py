"""Sharded torch checkpoints: a ``*.bin.index.json`` (Hugging Face's ``pytorch_model.bin.index.json``)
whose ``weight_map`` names the ``.bin`` shard holding each key.

The index is read and checked as a ``*.safetensors.index.json`` is (:mod:`.safetensors_format`): a
JSON object with a non-empty ``weight_map``, no key twice, each shard a plain file name for a regular
file beside the index (a link out of its folder is refused unless ``allow_outside_shards``). Each
shard is read by :class:`~.torch_format.TorchReader` with every check it makes (``weights_only``, the
expansion limit, ...) and the same reader options; a shard must hold exactly the keys the index maps
to it, so every key is in exactly one shard. Keys come shard by shard (shards by name), each in its
own file's order: the state dict's order, which the index (sorted by key) has lost.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...errors import CheckpointError
from ...specs import TensorSpec
from .safetensors_format import _shard_path, read_index


class ShardedTorchReader:
    """The shards a ``*.bin.index.json`` lists, each loaded once (memory-mapped) by ``open_shard``:
    :class:`~.torch_format.TorchReader`, which :func:`~.torch_format.open_torch` hands in (this module
    is imported by that one, not the other way round)."""

    def __init__(self, path: str | Path, *, open_shard: Callable[..., Any], allow_outside_shards: bool = False,
                 **options: Any):
        self.path = Path(path)
        self._open = open_shard
        weight_map, self._metadata = read_index(self.path)
        files: dict[str, Path] = {}
        for name in weight_map.values():
            if not isinstance(name, str) or name not in files:
                files[name] = _shard_path(self.path, name, allow_outside_shards)
        self._readers: dict[str, Any] = {}  # shard name → its TorchReader
        try:
            for name in sorted(files):
                self._readers[name] = self._open_shard(name, files[name], weight_map, options)
        except BaseException:
            self.close()
            raise
        self.weight_map: dict[str, str] = {k: n for n, r in self._readers.items() for k in r.specs()}
        self.meta_keys = frozenset(k for r in self._readers.values() for k in r.meta_keys)
        self.unstorable_keys = {k: d for r in self._readers.values() for k, d in r.unstorable_keys.items()}
        self.other_weights = {k: v for r in self._readers.values() for k, v in r.other_weights.items()}
        first = next(iter(self._readers.values()))
        self.unwrap_path, self.stripped_prefix = first.unwrap_path, first.stripped_prefix

    def _open_shard(self, name: str, file: Path, weight_map: dict, options: dict) -> Any:
        reader = self._open(file, **options)
        try:
            strip = reader.stripped_prefix
            listed = {k[len(strip):] if strip and k.startswith(strip) else k for k, n in weight_map.items() if n == name}
            present = set(reader.specs())
            if listed - present:
                missing = sorted(listed - present)
                raise CheckpointError(f"{self.path}: lists {len(missing)} key(s) in shard '{name}' that the shard "
                                      f"lacks, e.g. '{missing[0]}'; fix the index's weight_map")
            if present - listed:
                extra = sorted(present - listed)
                raise CheckpointError(f"{self.path}: shard '{name}' holds {len(extra)} key(s) the index does not map "
                                      f"to it, e.g. '{extra[0]}'; fix the index's weight_map")
        except BaseException:
            reader.close()
            raise
        return reader

    @property
    def shards(self) -> tuple[str, ...]:
        """Shard file names, in the order their keys come."""
        return tuple(self._readers)

    def shard_reader(self, name: str) -> Any:
        try:
            return self._readers[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no shard named '{name}' in the index") from None

    def _reader_for(self, key: str) -> Any:
        if key not in self.weight_map:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this checkpoint")
        return self._readers[self.weight_map[key]]

    def specs(self) -> dict[str, TensorSpec]:
        return {k: s for r in self._readers.values() for k, s in r.specs().items()}

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def non_tensors(self) -> dict[str, str]:
        return {k: v for r in self._readers.values() for k, v in r.non_tensors().items()}

    def extra_values(self) -> dict[str, Any]:
        return {k: v for r in self._readers.values() for k, v in r.extra_values().items()}

    def aliases(self) -> dict[str, str]:
        """Tied keys, within each shard (two shards never share a storage)."""
        return {k: v for r in self._readers.values() for k, v in r.aliases().items()}

    def shares_storage(self, key: str) -> tuple[str, ...]:
        return self._reader_for(key).shares_storage(key)

    def shard_of(self, key: str) -> Path:
        return self._reader_for(key).path

    def get_tensor(self, key: str):
        return self._reader_for(key).get_tensor(key)

    def independent_source(self, key: str):
        """What ``--verify`` compares with: the shard's own second read (see :class:`TorchReader`)."""
        return self._reader_for(key).independent_source(key)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()

    def __enter__(self) -> "ShardedTorchReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
