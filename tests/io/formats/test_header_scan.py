"""The canonical-header fast path against the general parser: same result, or it steps aside.

:func:`scan_canonical` only decides how fast a header is read. For every header of the corpus,
and for thousands of single-character mutations of canonical ones, it must either return
exactly what the general parser returns, or None (and the general parser decides, errors
included). Where the general parser refuses a header, the fast path must never accept it.
"""
from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.io.formats import safetensors_header as sh
from mapper_core.io.formats import header_scan
from mapper_core.io.formats.header_scan import scan_canonical
from safetensors_corpus import CORPUS  # tests/helpers


def general(text: str, data_size: int):
    """The general parser's (specs, offsets, metadata), or the CheckpointError it raises."""
    try:
        h = sh._validate(Path("x"), len(text), data_size, sh.parse_json(text, "x"))
    except CheckpointError as exc:
        return exc
    return h.specs, h.offsets, h.metadata


def fast_path(text: str, data_size: int):
    """The fast path's (specs, offsets, metadata) as the header it makes gives them, or None."""
    scanned = scan_canonical(text, data_size)
    if scanned is None:
        return None
    specs, ends, metadata, first = scanned
    assert len(ends) == len(specs)
    assert text[first - 1] in "{," and (not specs or text[first:].startswith('"'))
    h = sh.SafetensorsHeader(Path("x"), len(text), specs, None, metadata, ends=ends)
    return h.specs, h.offsets, h.metadata


def agree(text: str, data_size: int) -> bool:
    """Asserts the two paths agree; True when the fast path took the header."""
    fast, slow = fast_path(text, data_size), general(text, data_size)
    if fast is None:
        return False
    assert not isinstance(slow, CheckpointError), f"fast path accepts what the general one refuses: {slow}"
    assert fast == slow
    assert list(fast[0]) == list(slow[0]) and list(fast[1]) == list(slow[1])  # the same order too
    return True


def canonical(tensors: list[tuple[str, str, list[int], int]], metadata: dict | None = None) -> tuple[str, int]:
    """A header in the writers' form: (name, dtype, shape, nbytes) in data order; and its data size."""
    parts, pos = [], 0
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":"), ensure_ascii=False))
    for name, dtype, shape, nbytes in tensors:
        parts.append(json.dumps(name, ensure_ascii=False) + ":" + json.dumps(
            {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + nbytes]}, separators=(",", ":")))
        pos += nbytes
    return "{" + ",".join(parts) + "}", pos


SAMPLE = [("a.weight", "F32", [2, 3], 24), ("a.bias", "BF16", [3], 6), ("é.x", "F4", [2, 2], 2),
          ("b.0", "I64", [], 8), ("b.1", "U8", [0, 5], 0), ("c", "F6_E2M3", [4], 3)]


@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt", "k": "v:1"}])
def test_canonical_headers_take_the_fast_path_with_the_same_result(metadata):
    text, size = canonical(SAMPLE, metadata)
    assert agree(text, size)
    assert agree(text + "   ", size)  # the padding writers add


def test_shared_specs_are_one_object():
    text, size = canonical([(f"k{i}", "F32", [8, 8], 256) for i in range(5)])
    specs = scan_canonical(text, size)[0]
    assert len({id(s) for s in specs.values()}) == 1


@pytest.mark.parametrize("text, size", [
    ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8),
    ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8),
    ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 8),
    ('{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}', 4),
    # the kind is read loosely up to its ']' and then held to the strict form: int() alone would take these
    *[('{"a":{"dtype":"F32","shape":[%s],"data_offsets":[0,4]}}' % dims, 4)
      for dims in [" 1", "+1", "0_1", "1,", ",1", "1 ", "0x1", "1.0", "١"]],
    ('{"a":{"dtype":"F32", "shape":[1],"data_offsets":[0,4]}}', 4),
    ('{"a":{"dtype":"F32","shape":[1","shape":[1],"data_offsets":[0,4]}}', 4),
    ('{"a":{"dtype":"F\u0033","shape":[1],"data_offsets":[0,4]}}', 4),
    ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 5),
    ('{"a":{"dtype":"F32","shape":[1], "data_offsets":[0,4]}}', 4),
    ('{"a":{"dtype":"F32","shape":[' + "9" * 5000 + '],"data_offsets":[0,4]}}', 4),
    ('{"__metadata__":{"a":"b","a":"c"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4),
    ('{"__metadata__":{"a":1},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4),
    ('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"dtype":"F32","shape":[1],'
     '"data_offsets":[4,8]}}', 8),
    ('{"a\\"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4),
    ('{"a\tb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4),
    ('{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}', 4),
    ('{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', 2),
    ('{}', 0),
])
def test_anything_else_steps_aside(text, size):
    assert scan_canonical(text, size) is None
    agree(text, size)


def test_single_character_mutations_never_disagree():
    """Every kind of damage a byte can do: the fast path accepts only what the general one reads alike."""
    text, size = canonical(SAMPLE, {"format": "pt"})
    rng = random.Random(11)
    alphabet = '{}[],:" \\0123456789abeFI_-.\t\u00e9'
    taken = 0
    for _ in range(3000):
        i = rng.randrange(len(text))
        how = rng.randrange(3)
        c = rng.choice(alphabet)
        mutated = text[:i] + c + text[i + 1:] if how == 0 else text[:i] + text[i + 1:] if how == 1 else text[:i] + c + text[i:]
        for data_size in (size, size + 1, size - 1):
            taken += agree(mutated, data_size)
    assert taken > 100  # mutations inside names and numbers that stay canonical took the fast path


def test_headers_longer_than_a_chunk_are_read_in_pieces(monkeypatch):
    monkeypatch.setattr(header_scan, "CHUNK", 1000)
    text, size = canonical([(f"layer.{i}.w", "F16", [i % 7 + 1], 2 * (i % 7 + 1)) for i in range(500)],
                           {"format": "pt"})
    assert len(text) > 20 * header_scan.CHUNK
    assert agree(text, size)
    # a chunk boundary inside a name ('],"' in it) only sends the header the general way
    tricky, size = canonical([(f"n{i}]}},", "F16", [1], 2) for i in range(200)])
    agree(tricky, size)
    # each chunk after the first starts at the comma before a name: a '{' there (or anywhere
    # between entries) is not where the header starts, so it is never read as an opening brace
    starts = [i for i in range(1, len(text)) if text.startswith(',"layer.', i)]
    for i in starts[::7]:
        for c in "{ x":
            assert agree(text[:i] + c + text[i + 1:], size) is False


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_the_corpus_agrees(case):
    data = CORPUS[case]
    if len(data) < 8:
        return
    (n,) = struct.unpack("<Q", data[:8])
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError:
        return
    if n <= len(data) - 8:
        agree(text, len(data) - 8 - n)


@pytest.mark.parametrize("field", ["dtype", "shape", "data_offsets", None])
def test_a_value_nested_5000_deep_is_refused_not_a_recursion_error(tmp_path, field):
    # Python 3.12+ parses this JSON (3.11 refuses it while parsing); the message must not re-render it
    deep = "[" * 5000 + "]" * 5000
    entry = {"dtype": '"F32"', "shape": "[1]", "data_offsets": "[0,4]"}
    if field:
        entry[field] = deep
    body = ",".join(f'"{k}":{v}' for k, v in entry.items())
    text = ('{"a":{' + body + "}}" if field else '{"a":' + deep + "}").encode()
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(4))
    with pytest.raises(CheckpointError) as caught:
        sh.read_header(path)
    assert str(caught.value).startswith(f"{path}")
