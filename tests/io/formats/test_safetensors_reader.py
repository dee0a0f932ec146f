"""The safetensors readers: strict header checks, the library's own view, byte ranges, shards."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from mapper_core.errors import CheckpointError
from mapper_core.io.formats import builtin_formats, choose_format, open_checkpoint
from mapper_core.io.formats.safetensors_format import (
    SafetensorsReader, ShardedSafetensorsReader, open_safetensors, read_header, sniff_safetensors,
)
from cli_runner import python_process  # tests/helpers

ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2,
              torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]


def raw_file(path: Path, header: dict, data: bytes, header_length: int | None = None) -> Path:
    """A safetensors file written by hand, so it can be wrong on purpose."""
    body = json.dumps(header).encode()
    n = len(body) if header_length is None else header_length
    path.write_bytes(struct.pack("<Q", n) + body + data)
    return path


def entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def sample(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(8, generator=g).half(),
        "steps": torch.tensor(7),
        "empty": torch.zeros(0, 4),
        "mask": torch.rand(5, generator=g) > 0.5,
    }


# --- valid files -----------------------------------------------------------------------------


def test_specs_and_metadata_match_the_library(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(sample(), str(path), metadata={"format": "pt", "note": "x"})
    with SafetensorsReader(path) as r, safe_open(str(path), framework="pt") as lib:
        specs = r.specs()
        assert set(specs) == set(lib.keys())
        for key in lib.keys():
            sl = lib.get_slice(key)
            assert specs[key].dtype == sl.get_dtype()
            assert list(specs[key].shape) == sl.get_shape()
        assert r.metadata() == lib.metadata() == {"format": "pt", "note": "x"}


def test_specs_are_in_file_order(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(sample(), str(path))
    r = SafetensorsReader(path)
    starts = [r.byte_range(k)[0] for k in r.specs()]
    assert starts == sorted(starts)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_get_tensor_is_bit_exact_for_every_dtype(tmp_path, dtype):
    src = (torch.randn(3, 5) * 50).to(dtype)
    path = tmp_path / "d.safetensors"
    save_file({"t": src, "scalar": src[0, 0].clone(), "none": src[:0]}, str(path))
    with open_safetensors(path) as r:
        for key, want in {"t": src, "scalar": src[0, 0], "none": src[:0]}.items():
            got = r.get_tensor(key)
            assert got.dtype == dtype and got.shape == want.shape
            assert got.reshape(-1).view(torch.uint8).tolist() == want.reshape(-1).view(torch.uint8).tolist()


def test_byte_range_holds_the_raw_tensor_bytes(tmp_path):
    path = tmp_path / "m.safetensors"
    tensors = sample()
    save_file(tensors, str(path))
    r = SafetensorsReader(path)
    blob = path.read_bytes()
    assert r.data_start == 8 + struct.unpack("<Q", blob[:8])[0]
    for key, t in tensors.items():
        start, end = r.byte_range(key)
        assert r.locate(key).path == path and r.locate(key).nbytes == end - start
        assert blob[start:end] == bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist())
    assert max(r.byte_range(k)[1] for k in tensors) == len(blob)


def test_specs_do_not_import_torch(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(sample(), str(path))
    code = (
        "import sys; from mapper_core.io.formats import open_checkpoint\n"
        f"r = open_checkpoint({str(path)!r}); r.specs(); r.metadata()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    python_process(code, check=True)


def test_unknown_key_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(sample(), str(path))
    with pytest.raises(CheckpointError, match="no tensor 'nope'"):
        SafetensorsReader(path).get_tensor("nope")


def test_header_only_file_with_no_tensors(tmp_path):
    path = raw_file(tmp_path / "e.safetensors", {"__metadata__": {"a": "b"}}, b"")
    r = SafetensorsReader(path)
    assert r.specs() == {} and r.metadata() == {"a": "b"}


# --- bad input: every case names the file and what is wrong ----------------------------------


def bad_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    f4 = entry("F32", [2], 0, 8)
    good_header = json.dumps({"a": f4}).encode()
    cases = {
        "truncated-prefix": (tmp / "t1.safetensors", "truncated"),
        "truncated-data": (raw_file(tmp / "t2.safetensors", {"a": entry("F32", [4], 0, 16)}, b"\0" * 10), "truncated"),
        "length-past-file": (raw_file(tmp / "l1.safetensors", {"a": f4}, b"\0" * 8, header_length=10_000), "past the end"),
        "length-over-100MB": (raw_file(tmp / "l2.safetensors", {"a": f4}, b"\0" * 8, header_length=200 * 2**20), "100,000,000 bytes"),
        "overlap": (raw_file(tmp / "o.safetensors", {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)},
                             b"\0" * 12), "overlap"),
        "hole": (raw_file(tmp / "h.safetensors", {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 12, 20)},
                          b"\0" * 20), "hole"),
        "hole-at-start": (raw_file(tmp / "h0.safetensors", {"a": entry("F32", [2], 4, 12)}, b"\0" * 12), "hole"),
        "past-end": (raw_file(tmp / "p.safetensors", {"a": entry("F32", [2], 0, 8), "b": entry("F32", [4], 8, 24)},
                              b"\0" * 16), "past the end"),
        "trailing-bytes": (raw_file(tmp / "tr.safetensors", {"a": f4}, b"\0" * 12), "trailing"),
        "unknown-dtype": (raw_file(tmp / "u.safetensors", {"a": entry("F33", [2], 0, 8)}, b"\0" * 8), "unknown dtype 'F33'"),
        "size-disagrees": (raw_file(tmp / "s.safetensors", {"a": entry("F32", [3], 0, 8)}, b"\0" * 8), "12 bytes"),
        "negative-dim": (raw_file(tmp / "n.safetensors", {"a": entry("F32", [-2], 0, 8)}, b"\0" * 8), "non-negative"),
        "float-dim": (raw_file(tmp / "fd.safetensors", {"a": entry("F32", [2.0], 0, 8)}, b"\0" * 8), "non-negative"),
        "reversed-offsets": (raw_file(tmp / "r.safetensors", {"a": entry("F32", [0], 8, 0)}, b"\0" * 8), "begin <= end"),
        "missing-field": (raw_file(tmp / "m.safetensors", {"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "data_offsets"),
        "bad-metadata": (raw_file(tmp / "md.safetensors", {"__metadata__": {"n": 3}, "a": f4}, b"\0" * 8), "__metadata__"),
        "not-json": (tmp / "j.safetensors", "not valid JSON"),
        "json-array": (raw_file(tmp / "ja.safetensors", [], b""), "does not start with '{'"),
        "duplicate-key": (tmp / "dup.safetensors", "twice"),
    }
    (tmp / "t1.safetensors").write_bytes(b"\x05\x00\x00")
    body = b"{not json"
    (tmp / "j.safetensors").write_bytes(struct.pack("<Q", len(body)) + body)
    dup = good_header[:-1] + b', "a": ' + json.dumps(f4).encode() + b"}"
    (tmp / "dup.safetensors").write_bytes(struct.pack("<Q", len(dup)) + dup + b"\0" * 8)
    return cases


CASE_NAMES = ["truncated-prefix", "truncated-data", "length-past-file", "length-over-100MB", "overlap", "hole",
              "hole-at-start", "past-end", "trailing-bytes", "unknown-dtype", "size-disagrees", "negative-dim",
              "float-dim", "reversed-offsets", "missing-field", "bad-metadata", "not-json", "json-array",
              "duplicate-key"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_file_is_refused_naming_file_and_problem(tmp_path, case):
    path, expected = bad_cases(tmp_path)[case]
    with pytest.raises(CheckpointError) as info:
        open_safetensors(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


@pytest.mark.parametrize("case", ["overlap", "hole", "past-end", "unknown-dtype", "size-disagrees"])
def test_bad_file_errors_name_the_key(tmp_path, case):
    path, _ = bad_cases(tmp_path)[case]
    with pytest.raises(CheckpointError, match="tensor '(a|b)'"):
        read_header(path)


def test_case_list_is_complete(tmp_path):
    assert set(CASE_NAMES) == set(bad_cases(tmp_path))


def test_the_library_also_refuses_our_bad_files(tmp_path):
    # guards against our checks being stricter than the format: the library rejects these too
    for case in ["overlap", "hole", "past-end", "size-disagrees", "truncated-data"]:
        path, _ = bad_cases(tmp_path)[case]
        with pytest.raises(Exception):
            with safe_open(str(path), framework="pt") as f:
                for k in f.keys():
                    f.get_tensor(k)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damaged_file_gives_checkpoint_error_or_valid_header(tmp_path, data):
    path = tmp_path / "fuzz.safetensors"
    save_file({"a": torch.arange(4.0), "b": torch.ones(2, 3, dtype=torch.int16)}, str(path))
    blob = bytearray(path.read_bytes())
    cut = data.draw(st.integers(0, len(blob)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), max_size=4))
    for pos, value in flips:
        blob[pos] = value
    path.write_bytes(bytes(blob[:cut]))
    try:
        header = read_header(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    assert header.data_start + sum(s.nbytes for s in header.specs.values()) == cut


# --- sharded ---------------------------------------------------------------------------------


def make_shards(tmp: Path, weight_map: dict[str, str] | None = None) -> tuple[Path, dict[str, torch.Tensor]]:
    tensors = sample()
    first = {k: tensors[k] for k in ["conv.weight", "conv.bias"]}
    second = {k: tensors[k] for k in ["steps", "empty", "mask"]}
    save_file(first, str(tmp / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    save_file(second, str(tmp / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    if weight_map is None:
        weight_map = {k: "model-00001-of-00002.safetensors" for k in first}
        weight_map.update({k: "model-00002-of-00002.safetensors" for k in second})
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 1234, "source": "x"}, "weight_map": weight_map}))
    return index, tensors


def test_sharded_specs_tensors_and_locations(tmp_path):
    index, tensors = make_shards(tmp_path)
    with open_checkpoint(index) as r:
        assert isinstance(r, ShardedSafetensorsReader)
        assert r.metadata() == {"total_size": "1234", "source": "x"}
        assert list(r.specs()) == list(json.loads(index.read_text())["weight_map"])
        for key, t in tensors.items():
            assert r.specs()[key].shape == tuple(t.shape)
            got = r.get_tensor(key)
            assert got.reshape(-1).view(torch.uint8).tolist() == t.reshape(-1).view(torch.uint8).tolist()
            loc = r.locate(key)
            assert loc.path == r.shard_of(key) and (loc.start, loc.end) == r.byte_range(key)
            assert loc.path.read_bytes()[loc.start:loc.end] == bytes(t.reshape(-1).view(torch.uint8).tolist())
        assert r.shard_of("steps").name == "model-00002-of-00002.safetensors"


def test_shards_open_lazily(tmp_path):
    index, _ = make_shards(tmp_path)
    r = ShardedSafetensorsReader(index)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"garbage")  # damaged after open
    r.get_tensor("conv.bias")  # only the first shard is needed
    with pytest.raises(CheckpointError, match="model-00002-of-00002"):
        r.get_tensor("steps")


def test_index_naming_a_missing_shard(tmp_path):
    index, _ = make_shards(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(index)
    assert str(index) in str(info.value) and "model-00002-of-00002.safetensors" in str(info.value)


def test_index_key_absent_from_its_shard(tmp_path):
    index, _ = make_shards(tmp_path)
    doc = json.loads(index.read_text())
    doc["weight_map"]["ghost"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="ghost") as info:
        open_checkpoint(index).specs()
    assert str(index) in str(info.value)


def test_shard_holding_a_key_the_index_omits(tmp_path):
    index, _ = make_shards(tmp_path)
    doc = json.loads(index.read_text())
    del doc["weight_map"]["mask"]
    index.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="'mask'"):
        open_checkpoint(index).specs()


@pytest.mark.parametrize("name", ["../elsewhere.safetensors", "/etc/passwd", "", 7])
def test_index_may_only_name_files_beside_it(tmp_path, name):
    index, _ = make_shards(tmp_path, {"a": name})
    with pytest.raises(CheckpointError, match="plain file name"):
        open_checkpoint(index)


@pytest.mark.parametrize("text", ["[1, 2]", "{\"metadata\": {}}", "{oops"])
def test_malformed_index(tmp_path, text):
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(text)
    with pytest.raises(CheckpointError, match="m.safetensors.index.json"):
        open_checkpoint(index)


# --- sniffing --------------------------------------------------------------------------------


def test_sniffing_finds_safetensors_by_content_and_index_by_name(tmp_path):
    odd = tmp_path / "weights.bin"  # a safetensors file with a torch-ish suffix
    save_file(sample(), str(odd))
    assert sniff_safetensors(odd)
    assert choose_format(odd, builtin_formats()).name == "safetensors"
    index, _ = make_shards(tmp_path)
    assert choose_format(index, builtin_formats()).name == "safetensors"
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    assert not sniff_safetensors(spec)
    pt = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    assert not sniff_safetensors(pt)


def test_a_broken_file_with_the_suffix_still_reaches_the_strict_reader(tmp_path):
    path = raw_file(tmp_path / "b.safetensors", {"a": entry("F32", [2], 0, 8)}, b"\0" * 8, header_length=10_000)
    with pytest.raises(CheckpointError, match="past the end"):
        open_checkpoint(path)
