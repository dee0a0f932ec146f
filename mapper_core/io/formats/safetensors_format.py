"""safetensors readers: one file, or shards behind a ``*.safetensors.index.json``.

The header is parsed and checked by :mod:`.safetensors_header` with plain file reads, so
``specs()`` never imports torch. Tensor data is then read through the safetensors library
(``safe_open(framework="pt")``, memory-mapped).

``byte_range(key)`` gives absolute file offsets, so a converter can copy raw bytes without
decoding them; ``locate(key)`` also says which file holds the key (sharded checkpoints).

Keys mapper-core stored once (tied weights, metadata ``mapper.aliases``: see :mod:`.aliases`)
are keys of the checkpoint here too: ``specs()`` lists each alias with its stored key's spec,
``aliases()`` maps it to that key, and reading it reads the stored bytes.

An index names its shards by plain file names beside it. Symlinks are resolved: a shard whose
real path is outside the index's folder is refused unless the caller allows it
(``allow_outside_shards=True``, CLI ``--allow-outside-shards``) or it is a blob of the hub cache
repository the index is a snapshot of (:mod:`.hub_cache`); a shard must be a regular file.
"""
from __future__ import annotations

import errno
import os
import stat
import struct
from itertools import repeat
from operator import add
from pathlib import Path
from typing import Any, Sequence

from ...errors import CheckpointError
from .aliases import ALIASES_KEY, decode_aliases
from .base import FileRange, rows_of
from .hub_cache import in_own_blob_store
from .safetensors_header import (DIFFERENCES, MAX_HEADER_BYTES, JsonObject, SafetensorsHeader, has_lone_surrogate,
                                 parse_json, read_header, unique)
from ...specs import TensorSpec

INDEX_SUFFIX = ".safetensors.index.json"
SUFFIXES = (".safetensors", INDEX_SUFFIX)
MAX_INDEX_BYTES = 100_000_000  # an index of a million keys is about 60 MB

__all__ = ["DIFFERENCES", "MAX_HEADER_BYTES", "SafetensorsHeader", "SafetensorsReader", "ShardedSafetensorsReader",
           "open_safetensors", "read_header", "sniff_safetensors"]


class SafetensorsReader:
    """A single safetensors file. Header validated on open; tensors read on demand, memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header = read_header(self.path)
        # a shard opened alone may name aliases of keys another shard holds: those are not its own
        self._aliases = stored_aliases(self.header.metadata, self.header.specs, self.path, complete=False)
        self._handle: Any = None

    @property
    def data_start(self) -> int:
        """Absolute offset of the data area (8 + header length)."""
        return self.header.data_start

    def specs(self) -> dict[str, TensorSpec]:
        """Specs in file (data offset) order, then the aliases mapper-core stored once."""
        specs = dict(self.header.specs)
        for alias, key in self._aliases.items():
            specs[alias] = specs[key]
        return specs

    def aliases(self) -> dict[str, str]:
        """Alias key → the key whose bytes it shares (metadata ``mapper.aliases``); usually empty."""
        return dict(self._aliases)

    def metadata(self) -> dict[str, str]:
        return dict(self.header.metadata)

    def _check_key(self, key: str) -> str:
        """The stored key that holds ``key``'s bytes (itself, unless it is an alias)."""
        key = self._aliases.get(key, key)
        if key not in self.header.specs:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this checkpoint")
        return key

    def byte_range(self, key: str) -> tuple[int, int]:
        """Absolute ``(start, end)`` file offsets of the tensor's raw bytes."""
        begin, end = self.header.offsets[self._check_key(key)]
        return self.data_start + begin, self.data_start + end

    def locate(self, key: str) -> FileRange:
        try:  # called once per tensor by convert: kept to one lookup
            begin, end = self.header.offsets[key]
        except KeyError:
            begin, end = self.header.offsets[self._check_key(key)]
        start = self.header.data_start
        return FileRange(self.path, start + begin, start + end)

    def locate_many(self, keys: Sequence[str]) -> list[FileRange]:
        """``[locate(k) for k in keys]``, without a Python call per key."""
        path, starts, ends = self.ranges_of(keys)
        return rows_of(FileRange, zip(repeat(path), starts, ends))

    def ranges_of(self, keys: Sequence[str]) -> tuple[Path, list[int], list[int]]:
        """(this file, absolute start offsets, end offsets) of ``keys``, in columns for a million keys.
        Distinct keys never share bytes (the ranges tile the data area) unless both are empty."""
        header, start = self.header, self.header.data_start
        if self._aliases:
            keys = list(map(self._aliases.get, keys, keys))
        if keys == list(header.specs):  # the whole file in its own order: no lookup per key
            begins, ends = header.begins, header.ends
        else:
            try:
                begins, ends = map(list, zip(*map(header.offsets.__getitem__, keys))) if keys else ([], [])
            except KeyError as exc:
                raise CheckpointError(f"{self.path}: no tensor '{exc.args[0]}' in this checkpoint") from None
        return self.path, list(map(add, begins, repeat(start))), list(map(add, ends, repeat(start)))

    def tensor_json(self, keys: list[str], specs: list[TensorSpec]) -> memoryview | None:
        """The header's tensor entries as the file has them (``"k":{..},"k2":{..}``): what the writer
        renders for ``keys`` and ``specs`` when they are this whole file in its own order, and the
        header is in the writers' form and unchanged since it was read. None otherwise."""
        span, header = self.header.canonical, self.header
        if span is None or keys != list(header.specs) or specs != list(header.specs.values()):
            return None
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(8 + header.header_length)
        except OSError:
            return None
        if raw[:8] != struct.pack("<Q", header.header_length) or hash(raw[8:]) != span[2]:
            return None
        return memoryview(raw)[8 + span[0]:8 + span[1]]

    def get_tensor(self, key: str):
        """The tensor, memory-mapped by the safetensors library (pages load as they are touched); an
        alias gives its stored key's tensor."""
        key = self._check_key(key)
        if self._handle is None:
            from safetensors import safe_open

            try:
                self._handle = safe_open(str(self.path), framework="pt")
            except Exception as exc:  # the library's own checks; ours ran first, so this is rare
                raise CheckpointError(f"{self.path}: the safetensors library refused the file: {exc}") from None
        try:
            return self._handle.get_tensor(key)
        except Exception as exc:  # e.g. F6 dtypes, which no torch dtype holds
            raise CheckpointError(f"{self.path}: tensor '{key}' ({self.header.specs[key].dtype}) cannot be read as a "
                                  f"torch tensor: {exc}; it can only be copied as it is (no transform)") from None

    def close(self) -> None:
        self._handle = None  # safe_open has no close(); dropping it unmaps once tensors are gone

    def __enter__(self) -> "SafetensorsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shard_path(index: Path, name: object, allow_outside: bool) -> Path:
    """The shard's real path; refused unless it is a regular file beside the index (see the module doc)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", "..") or "\0" in name:
        raise CheckpointError(f"{index}: weight_map names shard {name!r:.200}; expected a plain file name beside the index")
    shown = repr(name)[:200]
    path = index.parent / name
    try:
        st = os.stat(path)
        real = Path(os.path.realpath(path))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            why = "a symlink to nothing" if os.path.islink(path) else "does not exist"
        elif exc.errno == errno.ELOOP:
            why = "is a symlink loop"
        elif exc.errno == errno.ENAMETOOLONG:
            why = f"has a name too long for the file system ({len(name.encode('utf-8', 'replace'))} bytes)"
        else:
            why = f"cannot be read: {exc.strerror or exc}"
        raise CheckpointError(f"{index}: names shard {shown}, which {why}; fix the index's weight_map") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket"
                if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise CheckpointError(f"{index}: names shard {shown}, which is {kind}, not a shard file")
    folder = Path(os.path.realpath(index.parent))
    if not allow_outside and not real.is_relative_to(folder) and not in_own_blob_store(index.parent, real):
        raise CheckpointError(
            f"{index}: shard {shown} is a link to {real}, outside the index's folder {folder}; refused so a "
            "checkpoint cannot point reads elsewhere. If you trust it, pass --allow-outside-shards "
            "(Python: allow_outside_shards=True)"
        )
    return real


class ShardedSafetensorsReader:
    """Shards listed by a ``*.safetensors.index.json``; each shard is opened when first needed.

    ``metadata()`` is the index's own ``metadata`` (non-string values as JSON text); a shard's
    ``__metadata__`` is available from ``shard_reader(name).metadata()``.
    """

    def __init__(self, path: str | Path, allow_outside_shards: bool = False):
        self.path = Path(path)
        weight_map, self._metadata = read_index(self.path)
        self.weight_map: dict[str, str] = {}
        self._files: dict[str, Path] = {}
        for key, name in weight_map.items():
            if not isinstance(name, str) or name not in self._files:
                self._files[name] = _shard_path(self.path, name, allow_outside_shards)
            self.weight_map[key] = name
        self._aliases = stored_aliases(self._metadata, self.weight_map, self.path, complete=True)
        self._readers: dict[str, SafetensorsReader] = {}

    @property
    def shards(self) -> tuple[str, ...]:
        """Shard file names, in the order the index first names them."""
        return tuple(self._files)

    def shard_reader(self, name: str) -> SafetensorsReader:
        """The reader of one shard, opened (header checked against the index) on first use."""
        reader = self._readers.get(name)
        if reader is None:
            if name not in self._files:
                raise CheckpointError(f"{self.path}: no shard named '{name}' in the index")
            reader = SafetensorsReader(self._files[name])
            listed = {k for k, n in self.weight_map.items() if n == name}
            present = set(reader.header.specs)
            if listed - present:
                missing = sorted(listed - present)
                raise CheckpointError(
                    f"{self.path}: lists {len(missing)} key(s) in shard '{name}' that the shard lacks, e.g. '{missing[0]}'"
                )
            if present - listed:
                extra = sorted(present - listed)
                raise CheckpointError(
                    f"{self.path}: shard '{name}' holds {len(extra)} key(s) the index does not map to it, e.g. '{extra[0]}'"
                )
            self._readers[name] = reader
        return reader

    def _reader_for(self, key: str) -> tuple[SafetensorsReader, str]:
        """The shard that holds ``key``'s bytes, and the key they are stored under there (an alias's
        stored key)."""
        key = self._aliases.get(key, key)
        if key not in self.weight_map:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this checkpoint")
        return self.shard_reader(self.weight_map[key]), key

    def specs(self) -> dict[str, TensorSpec]:
        """Specs in index order; reads every shard's header (not its data)."""
        for name in self._files:
            self.shard_reader(name)
        specs = {key: self._readers[name].header.specs[key] for key, name in self.weight_map.items()}
        for alias, key in self._aliases.items():
            specs[alias] = specs[key]
        return specs

    def aliases(self) -> dict[str, str]:
        """Alias key → the key whose bytes it shares (the index's ``mapper.aliases``); usually empty."""
        return dict(self._aliases)

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def shard_of(self, key: str) -> Path:
        """The shard file holding ``key``."""
        return self._reader_for(key)[0].path

    def byte_range(self, key: str) -> tuple[int, int]:
        """Absolute ``(start, end)`` offsets of the tensor's bytes inside ``shard_of(key)``."""
        reader, stored = self._reader_for(key)
        return reader.byte_range(stored)

    def locate(self, key: str) -> FileRange:
        reader, stored = self._reader_for(key)
        return reader.locate(stored)

    def get_tensor(self, key: str):
        reader, stored = self._reader_for(key)
        return reader.get_tensor(stored)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def __enter__(self) -> "ShardedSafetensorsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stored_aliases(metadata: dict[str, str], stored: Any, origin: Path, complete: bool) -> dict[str, str]:
    """The aliases ``metadata`` records whose stored key is in ``stored`` (every one, or CheckpointError,
    when ``complete``); CheckpointError for an alias that is also stored."""
    if ALIASES_KEY not in metadata:
        return {}
    found = {}
    for alias, key in decode_aliases(metadata, origin).items():
        if alias in stored:
            raise CheckpointError(f"{origin}: metadata '{ALIASES_KEY}' names '{alias}' as an alias of '{key}', but "
                                  f"'{alias}' is also stored as a tensor; the file is inconsistent (rewrite it)")
        if key in stored:
            found[alias] = key
        elif complete:
            raise CheckpointError(f"{origin}: metadata '{ALIASES_KEY}' names '{alias}' as an alias of '{key}', which "
                                  "the checkpoint does not hold; the file is inconsistent (rewrite it)")
    return found


def read_index(path: Path) -> tuple[JsonObject, dict[str, str]]:
    """An index's checked ``weight_map`` (key → shard name, no key twice, not empty) and its
    ``metadata`` (non-string values as JSON text); the torch shards' index is read the same way."""
    index = unique(_index_doc(path), str(path))
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, JsonObject):
        raise CheckpointError(f"{path}: expected an object with a 'weight_map' of tensor key → shard file")
    weight_map = unique(weight_map, f"{path}: weight_map")
    if not weight_map:
        raise CheckpointError(f"{path}: the weight_map is empty, so this index names no tensor; "
                              "is it the right file? (an index lists every key and the shard that holds it)")
    meta = index.get("metadata")
    if meta is not None and not isinstance(meta, JsonObject):
        raise CheckpointError(f"{path}: 'metadata' must be an object")
    meta = unique(meta or JsonObject(), f"{path}: metadata")
    return weight_map, {k: v if isinstance(v, str) else _json_text(v) for k, v in meta.items()}


def _index_doc(path: Path) -> JsonObject:
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise CheckpointError(f"{path}: not a regular file; an index is a JSON file")
            raw = fh.read(MAX_INDEX_BYTES + 1)
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not an index file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_INDEX_BYTES:
        raise CheckpointError(f"{path}: index is larger than {MAX_INDEX_BYTES:,} bytes; refused")
    doc = parse_json(raw, f"{path}: index")
    if b"\\u" in raw and has_lone_surrogate(doc):
        raise CheckpointError(f"{path}: index holds a lone UTF-16 surrogate (e.g. \"\\ud800\") in a key or "
                              "name; it is not valid Unicode")
    if not isinstance(doc, JsonObject):
        raise CheckpointError(f"{path}: expected an object with a 'weight_map' of tensor key → shard file")
    return doc


def _json_text(value: Any) -> str:
    import json

    from .safetensors_header import plain

    return json.dumps(plain(value))


def open_safetensors(path: str | Path, *, allow_outside_shards: bool = False,
                     **_other_formats_options: Any) -> SafetensorsReader | ShardedSafetensorsReader:
    """Open a ``.safetensors`` file or a ``*.safetensors.index.json`` (options for other formats are ignored)."""
    path = Path(path)
    if path.name.lower().endswith(INDEX_SUFFIX):
        return ShardedSafetensorsReader(path, allow_outside_shards)
    return SafetensorsReader(path)


def sniff_safetensors(path: Path) -> bool:
    """An index by its name; a single file by a plausible header length followed by '{'."""
    if path.name.lower().endswith(INDEX_SUFFIX):
        return True
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(72)
    except OSError:
        return False
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    start = head[8:8 + n].lstrip(b" \t\r\n")  # the library allows whitespace before the '{'
    return 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and (start[:1] == b"{" or (not start and len(head) == 72))
