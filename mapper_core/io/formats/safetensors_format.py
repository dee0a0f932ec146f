"""safetensors readers: one file, or shards behind a ``*.safetensors.index.json``.

The header is parsed here with plain file reads, so ``specs()`` never imports torch, and
it is checked strictly before anything trusts it: every dtype known, every shape a list of
non-negative ints, every byte range the size its dtype and shape say, and the ranges tiling
the data area exactly (in order, no overlap, no hole, nothing past the end). Tensor data is
then read through the safetensors library (``safe_open(framework="pt")``, memory-mapped).

``byte_range(key)`` gives absolute file offsets, so a converter can copy raw bytes without
decoding them; ``locate(key)`` also says which file holds the key (sharded checkpoints).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import CheckpointError
from .base import FileRange
from ...specs import DTYPE_SIZES, TensorSpec

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
INDEX_SUFFIX = ".safetensors.index.json"
SUFFIXES = (".safetensors", INDEX_SUFFIX)


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated safetensors header."""

    path: Path
    header_length: int
    specs: dict[str, TensorSpec]
    offsets: dict[str, tuple[int, int]]  # relative to data_start, as the file records them
    metadata: dict[str, str]

    @property
    def data_start(self) -> int:
        return 8 + self.header_length


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key '{k}' appears twice")
        out[k] = v
    return out


def read_header(path: str | Path) -> SafetensorsHeader:
    """Read and validate the header of one safetensors file; CheckpointError on anything wrong."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise CheckpointError(
                    f"{path}: truncated safetensors file ({size} bytes; the 8-byte header length is missing)"
                )
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"{path}: safetensors header length {n} is above the 100 MB limit; the file is corrupt or not safetensors"
                )
            if n > size - 8:
                raise CheckpointError(
                    f"{path}: safetensors header length {n} runs past the end of the file ({size} bytes); "
                    "the file is truncated or not safetensors"
                )
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not raw.startswith(b"{"):
        raise CheckpointError(f"{path}: safetensors header does not start with '{{'; the file is not safetensors")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header must be a JSON object")
    return _validate(path, n, size - 8 - n, header)


def _validate(path: Path, header_length: int, data_size: int, header: dict) -> SafetensorsHeader:
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: __metadata__ must map strings to strings")
    specs: dict[str, TensorSpec] = {}
    offsets: dict[str, tuple[int, int]] = {}
    for key, entry in header.items():
        where = f"{path}: tensor '{key}'"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{where}: expected an object with exactly dtype, shape, data_offsets; got {entry!r}"[:400])
        dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_SIZES:
            raise CheckpointError(f"{where}: unknown dtype {dtype!r}; supported: {', '.join(DTYPE_SIZES)}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise CheckpointError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(type(o) is int and o >= 0 for o in offs)
                or offs[0] > offs[1]):
            raise CheckpointError(f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end, got {offs!r}")
        spec = TensorSpec(dtype, tuple(shape))
        if spec.nbytes != offs[1] - offs[0]:
            raise CheckpointError(
                f"{where}: shape {list(shape)} × {dtype} is {spec.nbytes} bytes but data_offsets {offs} hold "
                f"{offs[1] - offs[0]} bytes"
            )
        specs[key] = spec
        offsets[key] = (offs[0], offs[1])
    _check_tiling(path, offsets, data_size)
    order = sorted(offsets, key=lambda k: offsets[k])  # file order, which a streaming copy wants
    return SafetensorsHeader(path, header_length, {k: specs[k] for k in order},
                             {k: offsets[k] for k in order}, dict(metadata))


def _check_tiling(path: Path, offsets: dict[str, tuple[int, int]], data_size: int) -> None:
    """The byte ranges must cover the data area exactly: no overlap, no hole, nothing past the end."""
    pos, prev = 0, None
    for key, (begin, end) in sorted(offsets.items(), key=lambda kv: kv[1]):
        if end > data_size:
            raise CheckpointError(
                f"{path}: tensor '{key}': data_offsets [{begin}, {end}] run past the end of the data area "
                f"({data_size} bytes); the file is truncated"
            )
        if begin < pos:
            raise CheckpointError(f"{path}: tensor '{key}': data_offsets [{begin}, {end}] overlap tensor '{prev}' (ends at {pos})")
        if begin > pos:
            after = f"after tensor '{prev}'" if prev else "at the start of the data area"
            raise CheckpointError(f"{path}: tensor '{key}': hole of {begin - pos} bytes {after} (bytes {pos}..{begin})")
        pos, prev = end, key
    if pos != data_size:
        raise CheckpointError(
            f"{path}: the data area is {data_size} bytes but the tensors end at {pos}; "
            "the file has trailing bytes or a damaged header"
        )


class SafetensorsReader:
    """A single safetensors file. Header validated on open; tensors read on demand, memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header = read_header(self.path)
        self._handle: Any = None

    @property
    def data_start(self) -> int:
        """Absolute offset of the data area (8 + header length)."""
        return self.header.data_start

    def specs(self) -> dict[str, TensorSpec]:
        """Specs in file (data offset) order."""
        return dict(self.header.specs)

    def metadata(self) -> dict[str, str]:
        return dict(self.header.metadata)

    def _check_key(self, key: str) -> None:
        if key not in self.header.specs:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this checkpoint")

    def byte_range(self, key: str) -> tuple[int, int]:
        """Absolute ``(start, end)`` file offsets of the tensor's raw bytes."""
        self._check_key(key)
        begin, end = self.header.offsets[key]
        return self.data_start + begin, self.data_start + end

    def locate(self, key: str) -> FileRange:
        return FileRange(self.path, *self.byte_range(key))

    def get_tensor(self, key: str):
        """The tensor, memory-mapped by the safetensors library (pages load as they are touched)."""
        self._check_key(key)
        if self._handle is None:
            from safetensors import safe_open

            try:
                self._handle = safe_open(str(self.path), framework="pt")
            except Exception as exc:  # the library's own checks; ours ran first, so this is rare
                raise CheckpointError(f"{self.path}: the safetensors library refused the file: {exc}") from None
        return self._handle.get_tensor(key)

    def close(self) -> None:
        self._handle = None  # safe_open has no close(); dropping it unmaps once tensors are gone

    def __enter__(self) -> "SafetensorsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shard_path(index: Path, name: object) -> Path:
    # An index may only name files beside it: a checkpoint must not point reads elsewhere.
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise CheckpointError(f"{index}: weight_map names shard {name!r}; expected a plain file name beside the index")
    return index.parent / name


class ShardedSafetensorsReader:
    """Shards listed by a ``*.safetensors.index.json``; each shard is opened when first needed.

    ``metadata()`` is the index's own ``metadata`` (non-string values as JSON text); a shard's
    ``__metadata__`` is available from ``shard_reader(name).metadata()``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            index = json.loads(self.path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CheckpointError(f"{self.path}: index is not valid JSON: {exc}") from None
        if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            raise CheckpointError(f"{self.path}: expected an object with a 'weight_map' of tensor key → shard file")
        meta = index.get("metadata") or {}
        if not isinstance(meta, dict):
            raise CheckpointError(f"{self.path}: 'metadata' must be an object")
        self._metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
        self.weight_map: dict[str, str] = {}
        self._files: dict[str, Path] = {}
        for key, name in index["weight_map"].items():
            shard = _shard_path(self.path, name)
            if name not in self._files:
                if not shard.is_file():
                    raise CheckpointError(f"{self.path}: names shard '{name}', which does not exist ({shard})")
                self._files[name] = shard
            self.weight_map[key] = name
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

    def _reader_for(self, key: str) -> SafetensorsReader:
        if key not in self.weight_map:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this checkpoint")
        return self.shard_reader(self.weight_map[key])

    def specs(self) -> dict[str, TensorSpec]:
        """Specs in index order; reads every shard's header (not its data)."""
        for name in self._files:
            self.shard_reader(name)
        return {key: self._readers[name].header.specs[key] for key, name in self.weight_map.items()}

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def shard_of(self, key: str) -> Path:
        """The shard file holding ``key``."""
        return self._reader_for(key).path

    def byte_range(self, key: str) -> tuple[int, int]:
        """Absolute ``(start, end)`` offsets of the tensor's bytes inside ``shard_of(key)``."""
        return self._reader_for(key).byte_range(key)

    def locate(self, key: str) -> FileRange:
        return self._reader_for(key).locate(key)

    def get_tensor(self, key: str):
        return self._reader_for(key).get_tensor(key)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def __enter__(self) -> "ShardedSafetensorsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_safetensors(path: str | Path, **options: Any) -> SafetensorsReader | ShardedSafetensorsReader:
    """Open a ``.safetensors`` file or a ``*.safetensors.index.json`` (options for other formats are ignored)."""
    path = Path(path)
    if path.name.lower().endswith(INDEX_SUFFIX):
        return ShardedSafetensorsReader(path)
    return SafetensorsReader(path)


def sniff_safetensors(path: Path) -> bool:
    """An index by its name; a single file by a plausible header length followed by '{'."""
    if path.name.lower().endswith(INDEX_SUFFIX):
        return True
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"
