"""convert's entries in columns (a safetensors source, no transform) against the entry-by-entry path.

A reader with ``locate_many`` has its entries made in columns; without it, one at a time (the
path every other reader takes). Both must write the same bytes, plain and renamed, and
``locate_many`` must be ``locate`` for every key.
"""
from __future__ import annotations

import random

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.io.convert import convert
from mapper_core.io.formats.header_encode import Entry, encode_header, library_order
from mapper_core.io.formats.safetensors_format import SafetensorsReader
from mapper_core.rules import load_rules
from mapper_core.specs import TensorSpec

RULES = """\
version: 1
name: renamer
rules:
  - match: 'enc\\.(\\d+)\\.(weight|bias)'
    target: 'encoder.layers.{1}.{2}'
skip:
  - 'aux\\..*'
"""
DTYPES = ["F32", "F16", "BF16", "I64", "U8", "F4", "BOOL"]


class OneByOne(SafetensorsReader):
    """The same file, without the columns: convert takes the entry-by-entry path."""

    locate_many = None  # type: ignore[assignment]


@pytest.fixture
def src(tmp_path):
    """A file in save_file's form (mixed dtypes, empty tensors) with made-up bytes."""
    rng = random.Random(5)
    entries = []
    for i in range(60):
        dtype = rng.choice(DTYPES)
        shape = (rng.choice([0, 1, 2, 4]), 2) if dtype == "F4" else tuple(rng.choice([0, 1, 3]) for _ in range(rng.randint(0, 2)))
        kind = rng.choice(["enc.{}.weight", "enc.{}.bias", "aux.{}", "other.{}"])
        entries.append(Entry(kind.format(i), TensorSpec(dtype, shape), None))
    ordered = library_order(entries)
    header, offsets = encode_header(ordered, {"format": "pt"})
    size = max((end for _, end in offsets.values()), default=0)
    path = tmp_path / "src.safetensors"
    path.write_bytes(header + rng.randbytes(size))
    return path


@pytest.mark.parametrize("renamed", [False, True])
def test_columns_write_what_the_entry_by_entry_path_writes(tmp_path, src, renamed):
    rules = None
    if renamed:
        (tmp_path / "rules.yaml").write_text(RULES)
        rules = load_rules(tmp_path / "rules.yaml")
    outs = []
    for reader_type in (SafetensorsReader, OneByOne):
        out = tmp_path / f"{reader_type.__name__}.safetensors"
        with reader_type(src) as reader:
            result = convert(src, out, reader=reader, rules=rules, unmatched="drop" if renamed else None)
        outs.append((out.read_bytes(), result.tensors, result.left_behind, result.tensor_bytes))
    assert outs[0] == outs[1]
    assert outs[0][1] > 10


def test_locate_many_is_locate_for_every_key(src):
    reader = SafetensorsReader(src)
    keys = list(reader.specs())
    assert reader.locate_many(keys) == [reader.locate(k) for k in keys]
    shuffled = random.Random(1).sample(keys, 20)
    assert reader.locate_many(shuffled) == [reader.locate(k) for k in shuffled]
    assert reader.locate_many([]) == []
    with pytest.raises(CheckpointError, match="no tensor 'nope'"):
        reader.locate_many([keys[0], "nope"])
