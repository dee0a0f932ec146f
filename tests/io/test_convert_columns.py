"""convert's entries in columns (a safetensors source, no transform) against the entry-by-entry path.

A reader with ``ranges_of`` has its entries kept as columns; without it, one at a time (the
path every other reader takes). Both must write the same bytes, plain and renamed, and
``locate_many`` must be ``locate`` for every key.
"""
from __future__ import annotations

import random

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.io.convert import convert
from mapper_core.io.formats.entries import Entry
from mapper_core.io.formats.header_encode import TensorLayout, encode_header, library_order
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

    ranges_of = None  # type: ignore[assignment]


@pytest.fixture
def src(tmp_path):
    """A file in save_file's form (mixed dtypes, empty tensors) with made-up bytes."""
    rng = random.Random(5)
    entries = []
    for i in range(60):
        dtype = rng.choice(DTYPES)
        shape = (rng.choice([0, 1, 2, 4]), 2) if dtype == "F4" else tuple(rng.choice([0, 1, 3]) for _ in range(rng.randint(0, 2)))
        kind = rng.choice(["enc.{}.weight", "enc.{}.bias", "aux.{}", "other.{}", "ünï.{}"])
        entries.append(Entry(kind.format(i), TensorSpec(dtype, shape), None))
    ordered = library_order(entries)
    header, offsets = encode_header(ordered, {"format": "pt", "note": "naïve"})
    size = max((end for _, end in offsets.values()), default=0)
    path = tmp_path / "src.safetensors"
    path.write_bytes(header + rng.randbytes(size))
    return path


@pytest.mark.parametrize("options", [{}, {"max_shard_size": "40B"}, {"verify": True}])
@pytest.mark.parametrize("renamed", [False, True])
def test_columns_write_what_the_entry_by_entry_path_writes(tmp_path, src, renamed, options):
    rules = None
    if renamed:
        (tmp_path / "rules.yaml").write_text(RULES)
        rules = load_rules(tmp_path / "rules.yaml")
    outs = []
    for reader_type in (SafetensorsReader, OneByOne):
        out = tmp_path / reader_type.__name__
        out.mkdir()
        dst = out / ("model.safetensors.index.json" if "max_shard_size" in options else "model.safetensors")
        with reader_type(src) as reader:
            result = convert(src, dst, reader=reader, rules=rules, unmatched="drop" if renamed else None, **options)
        written = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        outs.append((written, result.tensors, result.left_behind, result.tensor_bytes, result.checked))
    assert outs[0] == outs[1]
    assert outs[0][1] > 10
    assert len(outs[0][0]) > 2 if "max_shard_size" in options else len(outs[0][0]) == 1  # shards and the index


def test_locate_many_is_locate_for_every_key(src):
    reader = SafetensorsReader(src)
    keys = list(reader.specs())
    assert reader.locate_many(keys) == [reader.locate(k) for k in keys]
    shuffled = random.Random(1).sample(keys, 20)
    assert reader.locate_many(shuffled) == [reader.locate(k) for k in shuffled]
    assert reader.locate_many([]) == []
    with pytest.raises(CheckpointError, match="no tensor 'nope'"):
        reader.locate_many([keys[0], "nope"])


def test_a_whole_file_in_its_own_order_gives_its_own_header_text(src):
    """What convert writes for a plain conversion without rendering the header again."""
    reader = SafetensorsReader(src)
    keys, specs = list(reader.specs()), list(reader.specs().values())
    own = reader.tensor_json(keys, specs)
    rendered = TensorLayout([Entry(k, s, None) for k, s in zip(keys, specs)])._text
    assert own is not None and bytes(own) == bytes(rendered)
    assert reader.tensor_json(keys[::-1], specs[::-1]) is None  # another order
    assert reader.tensor_json(keys, [TensorSpec(s.dtype, s.shape) for s in specs]) is not None  # equal specs
    data = bytearray(src.read_bytes())
    at = data.index(b"enc.")
    data[at:at + 4] = b"ENC."  # the same length, another header: the file changed since it was read
    src.write_bytes(bytes(data))
    assert reader.tensor_json(keys, specs) is None


def test_a_header_in_another_form_has_no_text_to_take(tmp_path):
    path = tmp_path / "spaced.safetensors"
    text = b'{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}'
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"xy")
    reader = SafetensorsReader(path)
    assert reader.header.canonical is None
    assert reader.tensor_json(["a"], list(reader.specs().values())) is None
