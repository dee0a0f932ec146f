"""Spec files: a JSON description of a checkpoint's tensors, without any tensor data.

Either ``{"tensors": {key: {"dtype": "F32", "shape": [..]}}, "metadata": {..}}`` or the bare
``{key: {"dtype": ..., "shape": ...}}``. Dtypes use the safetensors names (``F32``, ``BF16``);
torch spellings (``float32``, ``torch.bfloat16``) are accepted too. Useful as a planning
target when only a model's shapes are known; ``get_tensor`` always refuses.

As in a safetensors header, a key written twice (the file is ambiguous) and a shape whose values or
bytes do not fit 64 bits (no checkpoint can hold it) are refused. A file past :data:`MAX_BYTES`
(unless ``allow_expansion``) or that is not a regular file is refused before it is read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, json_problem
from ...specs import DTYPE_BITS, U64_MAX, TensorSpec, shape_numel, shown_shape
from .safetensors_header import has_lone_surrogate
from .whole_file import read_whole

SUFFIXES = (".json",)
INDEX_SUFFIX = ".safetensors.index.json"
# indexes of sharded checkpoints (safetensors; torch's pytorch_model.bin.index.json), never spec files
INDEX_SUFFIXES = (INDEX_SUFFIX, ".bin.index.json", ".pt.index.json", ".pth.index.json")
TORCH_NAMES = {
    "float64": "F64", "double": "F64", "float32": "F32", "float": "F32", "float16": "F16", "half": "F16",
    "bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ", "complex64": "C64",
    "int64": "I64", "long": "I64", "int32": "I32", "int": "I32", "int16": "I16", "short": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL",
}
MAX_PROBLEMS = 20
# write_spec_json writes about 130 bytes a tensor, so this is some 2 million tensors; parsing a spec
# file takes about 6x its size in memory (a 40 MB file of 300,000 tensors: 245 MB at its peak)
MAX_BYTES = 256 * 1024 * 1024
SHOWN_CHARS = 200  # of a key or a refused value in a message: a file may hold one of megabytes


class _KeyTwice(Exception):
    """Raised from the JSON parser on an object with a key written twice."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_key_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        raise _KeyTwice(next(k for k, _ in pairs if k in seen or seen.add(k)))  # type: ignore[func-returns-value]
    return out


def _line_of_second(text: str, key: str) -> str:
    """`` (line N)``: where ``key`` (as JSON writes it) appears the second time in ``text``, if found."""
    quoted = json.dumps(key, ensure_ascii=False)
    first = text.find(quoted)
    second = text.find(quoted, first + len(quoted)) if first >= 0 else -1
    return f" (line {text.count(chr(10), 0, second) + 1})" if second >= 0 else ""


def _clip(text: str) -> str:
    """``text`` for a message, its start only when it is long (a key or a value of megabytes)."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def _dtype_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if value in DTYPE_BITS:
        return value
    name = value.removeprefix("torch.")
    return TORCH_NAMES.get(name) or (value.upper() if value.upper() in DTYPE_BITS else None)


def _split(doc: Any) -> tuple[Any, Any]:
    """(tensors, metadata) of either accepted form."""
    if (isinstance(doc, dict) and isinstance(doc.get("tensors"), dict) and set(doc) <= {"tensors", "metadata"}
            and "dtype" not in doc["tensors"]):
        return doc["tensors"], doc.get("metadata") or {}
    return doc, {}


def parse_spec_document(doc: Any, origin: str) -> tuple[dict[str, TensorSpec], dict[str, str]]:
    """Specs and metadata from a parsed spec document; CheckpointError listing every problem found."""
    if isinstance(doc, dict) and isinstance(doc.get("weight_map"), dict) and set(doc) <= {"weight_map", "metadata"}:
        raise CheckpointError(
            f"{origin}: is the index of a sharded checkpoint (a 'weight_map' of tensor key → shard file), not a "
            "spec file; name it as such so its shards are read: *.safetensors.index.json for safetensors shards, "
            "*.bin.index.json (pytorch_model.bin.index.json) for torch shards")
    tensors, metadata = _split(doc)
    problems: list[str] = []
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{origin}: expected a JSON object of tensor key → {{dtype, shape}}, got {type(tensors).__name__}")
    if not isinstance(metadata, dict):
        problems.append("metadata: expected an object of string → string")
        metadata = {}
    for k, v in metadata.items():
        if not isinstance(v, str):
            problems.append(f"metadata '{_clip(k)}': expected a string, got {json.dumps(v)[:60]}")
    specs: dict[str, TensorSpec] = {}
    for key, entry in tensors.items():
        if not isinstance(entry, dict):
            problems.append(f"tensor '{_clip(key)}': expected an object with dtype and shape, got {json.dumps(entry)[:60]}")
            continue
        extra = set(entry) - {"dtype", "shape"}
        if extra:
            problems.append(f"tensor '{_clip(key)}': unexpected field(s) {_clip(', '.join(sorted(extra)))}; only dtype and "
                            "shape are allowed")
        dtype, shape = _dtype_name(entry.get("dtype")), entry.get("shape")
        if dtype is None:
            problems.append(f"tensor '{_clip(key)}': unknown dtype {_clip(json.dumps(entry.get('dtype')))}; use one of "
                            f"{', '.join(DTYPE_BITS)}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            problems.append(f"tensor '{_clip(key)}': shape must be a list of non-negative integers, got "
                            f"{_clip(json.dumps(shape))}")
            continue
        values = shape_numel(shape)
        if values is None or (dtype is not None and values * DTYPE_BITS[dtype] > 8 * U64_MAX):
            what = "values" if values is None else "bytes"
            problems.append(f"tensor '{_clip(key)}': shape {shown_shape(shape)} has more {what} than fit 64 bits; no "
                            "checkpoint can hold it (a typo in the shape?)")
            continue
        if dtype is not None:
            specs[key] = TensorSpec(dtype, tuple(shape))
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise CheckpointError(
            f"{origin}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in spec file:\n  "
            + "\n  ".join(shown) + more
        )
    return specs, dict(metadata)


class SpecJsonReader:
    """A spec file: headers only."""

    def __init__(self, path: str | Path, allow_expansion: bool = False):
        self.path = Path(path)
        raw = read_whole(self.path, None if allow_expansion else MAX_BYTES, too_big=_too_big,
                         what="a spec file is a JSON file of tensor key → {dtype, shape}; give its path",
                         grew="is something still writing it? Read it once it is complete")
        try:
            text = raw.decode("utf-8")
            doc = json.loads(text, object_pairs_hook=_no_key_twice)
        except _KeyTwice as twice:
            raise CheckpointError(f"{self.path}: key {json.dumps(twice.key)[:SHOWN_CHARS]} appears twice"
                                  f"{_line_of_second(text, twice.key)}; the file is ambiguous (refused on purpose): "
                                  "keep one of them") from None
        except ValueError as exc:
            raise CheckpointError(f"{self.path}: not valid JSON: {json_problem(exc)}") from None
        except RecursionError:
            raise CheckpointError(f"{self.path}: JSON nested too deeply; a spec file is a flat object of "
                                  "key → {dtype, shape}") from None
        if has_lone_surrogate(doc):
            raise CheckpointError(f"{self.path}: holds a lone UTF-16 surrogate (e.g. \"\\ud800\") in a key or "
                                  "value; it is not valid Unicode")
        self._specs, self._metadata = parse_spec_document(doc, str(self.path))

    def specs(self) -> dict[str, TensorSpec]:
        return dict(self._specs)

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def get_tensor(self, key: str):
        raise CheckpointError(f"{self.path}: spec files hold no tensor data (asked for '{key}'); use a checkpoint instead")

    def close(self) -> None:
        pass

    def __enter__(self) -> "SpecJsonReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_spec_json(path: str | Path, allow_expansion: bool = False, **_other_formats_options: Any) -> SpecJsonReader:
    return SpecJsonReader(path, allow_expansion=allow_expansion)


def _too_big(size: int) -> str:
    return (f"the file is {size:,} bytes; spec files are limited to {MAX_BYTES:,} bytes (some 2 million tensors as "
            "write_spec_json writes them; parsing takes about 6x the file in memory). Check that this is really a "
            "spec file; if it is, and you have the memory, pass --allow-expansion (Python: allow_expansion=True)")


def sniff_spec_json(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".json") and not name.endswith(INDEX_SUFFIXES)


def write_spec_json(specs: dict[str, TensorSpec], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a spec file (the wrapped form); handy for saving a model's shapes as a planning target."""
    doc = {"tensors": {k: s.to_dict() for k, s in specs.items()}, "metadata": dict(metadata or {})}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
