"""The streaming safetensors writer, checked against the safetensors library's own reader and writer."""
from __future__ import annotations

import errno
import json
import os
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bitwise import same_bits  # tests/helpers
from mapper_core.io.atomic import AtomicFiles
from mapper_core.errors import BadInputError, CheckpointError
from mapper_core.io.formats import header_encode
from mapper_core.io.formats import writer as writer_mod
from mapper_core.io.formats.pages import FileMappings
from mapper_core.io.formats.safetensors_format import SafetensorsReader
from mapper_core.io.formats.writer import (Entry, FileRange, FileWriter, RangeCopier, encode_header, library_order,
                                        tensor_bytes, write_safetensors)
from mapper_core.io.formats.shards import index_json, parse_size, shard_names, split_shards
from mapper_core.specs import TensorSpec
from mapper_core.io.torch_dtypes import NAME_TO_TORCH, spec_of

ALL_DTYPES = list(NAME_TO_TORCH.values())


def sample(dtype: torch.dtype, shape=(3, 5), seed: int = 0) -> torch.Tensor:
    """Random bits of any dtype (NaN payloads, -0.0 and all)."""
    g = torch.Generator().manual_seed(seed)
    itemsize = torch.empty((), dtype=dtype).element_size()
    n = int(torch.Size(shape).numel())
    raw = torch.randint(0, 256, (n * itemsize,), dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        raw = raw % 2
    return raw.view(dtype).reshape(shape)


def write(path, entries, metadata=None, **kw):
    with AtomicFiles() as out:
        w = FileWriter(out.create(path), entries, metadata, **kw)
        w.write()
        out.commit()
    return w


def tensor_entries(tensors):
    return [Entry(k, spec_of(t), (lambda t=t: t)) for k, t in tensors.items()]


@pytest.fixture
def every_dtype():
    tensors = {f"t.{str(dt).split('.')[-1]}": sample(dt, seed=i) for i, dt in enumerate(ALL_DTYPES)}
    tensors["scalar"] = torch.tensor(-0.0)
    tensors["empty"] = torch.zeros(0, 4, dtype=torch.float16)
    return tensors


# --- the header ------------------------------------------------------------------------------

def test_output_is_byte_identical_to_save_file(tmp_path, every_dtype):
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    write(ours, tensor_entries(every_dtype))
    save_file(every_dtype, str(theirs))
    assert ours.read_bytes() == theirs.read_bytes()


def test_header_is_padded_with_spaces_to_8_bytes_and_metadata_comes_first(tmp_path):
    path = tmp_path / "m.safetensors"
    write(path, tensor_entries({"a": torch.ones(3)}), {"z": "1", "format": "pt"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    text = raw[8:8 + n].decode()
    assert text.startswith('{"__metadata__":{"format":"pt","z":"1"}')
    assert text.rstrip(" ") == text.rstrip() and len(text) - len(text.rstrip(" ")) < 8
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "z": "1"}


def test_library_order_widest_dtype_first_then_key():
    specs = {"b": "F16", "a": "F16", "c": "F64", "d": "BOOL", "e": "U64"}
    entries = [Entry(k, TensorSpec(d, (1,)), lambda: None) for k, d in specs.items()]
    assert [e.key for e in library_order(entries)] == ["e", "c", "a", "b", "d"]


@pytest.mark.parametrize("key", ["__metadata__", "dup"])
def test_reserved_and_duplicate_keys_are_refused(key):
    entries = [Entry("dup", TensorSpec("F32", (1,)), lambda: None), Entry(key, TensorSpec("F32", (1,)), lambda: None)]
    with pytest.raises(BadInputError, match=key):
        encode_header(entries)


def test_non_string_metadata_is_refused():
    with pytest.raises(BadInputError, match="strings"):
        encode_header([], {"n": 3})


def test_finish_rewrites_the_header_in_place_and_must_fit(tmp_path):
    path = tmp_path / "m.safetensors"
    with AtomicFiles() as out:
        w = FileWriter(out.create(path), tensor_entries({"a": torch.arange(4.0)}), {"sha": "0" * 64})
        w.write()
        w.finish({"sha": "f" * 64})
        w.finish({"sha": "short"})  # shorter values pad with spaces; the library accepts that
        with pytest.raises(RuntimeError, match="reserved"):
            w.finish({"sha": "f" * 64, "more": "x" * 64})
        out.commit()
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"sha": "short"}
        assert torch.equal(f.get_tensor("a"), torch.arange(4.0))


# --- copying raw byte ranges -----------------------------------------------------------------

@pytest.fixture
def source_file(tmp_path, every_dtype):
    path = tmp_path / "src.safetensors"
    save_file(every_dtype, str(path))
    return path


def range_entries(path, rename=lambda k: k):
    from mapper_core.io.formats.safetensors_format import SafetensorsReader

    r = SafetensorsReader(path)
    return [Entry(rename(k), spec, FileRange(path, *r.byte_range(k))) for k, spec in r.specs().items()]


@pytest.mark.parametrize("method", RangeCopier.METHODS)
def test_every_copy_method_gives_the_same_readable_file(tmp_path, source_file, every_dtype, method):
    if method != "buffer" and not hasattr(os, method):
        pytest.skip(f"os.{method} is not available here")
    out = tmp_path / "out.safetensors"
    write(out, range_entries(source_file, lambda k: "renamed." + k), copier=RangeCopier(method))
    loaded = load_file(str(out))
    assert set(loaded) == {"renamed." + k for k in every_dtype}
    for k, t in every_dtype.items():
        assert same_bits(loaded["renamed." + k], t), k


def test_copier_falls_back_when_the_kernel_refuses(tmp_path, source_file, every_dtype, monkeypatch):
    def refuse(*args):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    monkeypatch.setattr(os, "sendfile", refuse, raising=False)
    copier = RangeCopier()
    out = tmp_path / "out.safetensors"
    write(out, range_entries(source_file), copier=copier)
    assert copier.methods == ["buffer"]
    assert all(same_bits(load_file(str(out))[k], t) for k, t in every_dtype.items())


def test_adjacent_source_ranges_are_copied_in_one_call(tmp_path, monkeypatch):
    many = {f"k{i:03d}": torch.full((3,), float(i)) for i in range(200)}
    src = tmp_path / "many.safetensors"
    save_file(many, str(src))  # by name: the writer's order is the file's order
    calls = []
    original = RangeCopier.copy
    monkeypatch.setattr(RangeCopier, "copy", lambda self, *a, **k: calls.append(a[4]) or original(self, *a, **k))
    with SafetensorsReader(src) as r:
        entries = [Entry(k, s, r.locate(k)) for k, s in r.specs().items()]
    write(tmp_path / "out.safetensors", entries)
    assert calls == [200 * 12]
    assert (tmp_path / "out.safetensors").read_bytes() == src.read_bytes()


def test_a_source_shorter_than_its_range_is_an_error(tmp_path):
    src = tmp_path / "short.bin"
    src.write_bytes(b"\0" * 10)
    entries = [Entry("a", TensorSpec("F32", (4,)), FileRange(src, 0, 16))]
    with pytest.raises(CheckpointError, match="short.bin: ended early"):
        write(tmp_path / "out.safetensors", entries, copier=RangeCopier("buffer"))
    assert not (tmp_path / "out.safetensors").exists()


def test_a_range_whose_size_disagrees_with_the_spec_is_an_error(tmp_path, source_file):
    entries = [Entry("a", TensorSpec("F32", (3,)), FileRange(source_file, 0, 16))]
    with pytest.raises(CheckpointError, match="16 bytes"):
        write(tmp_path / "out.safetensors", entries)


def test_large_ranges_are_copied_in_chunks_with_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_mod, "CHUNK", 1000)
    src = tmp_path / "src.safetensors"
    t = torch.arange(2500, dtype=torch.float32)
    save_file({"t": t}, str(src))
    seen = []
    with AtomicFiles() as out:
        FileWriter(out.create(tmp_path / "o.safetensors"), range_entries(src)).write(lambda n, k: seen.append((n, k)))
        out.commit()
    assert seen == [(1000, "t")] * 10
    assert torch.equal(load_file(str(tmp_path / "o.safetensors"))["t"], t)


# --- writing torch tensors -------------------------------------------------------------------

def test_tensors_round_trip_bit_exact_including_views(tmp_path, every_dtype):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = dict(every_dtype, transposed=base.t(), column=base[:, 2], strided=base[::2, ::3],
                   offset=base[1:], expanded=torch.tensor([1.5]).expand(3, 2))
    path = tmp_path / "m.safetensors"
    write_safetensors(path, tensors, {"format": "pt"})
    loaded = load_file(str(path))
    assert set(loaded) == set(tensors)
    for k, t in tensors.items():
        assert same_bits(loaded[k], t.contiguous()), k


def test_a_tensor_that_disagrees_with_its_spec_is_an_error(tmp_path):
    entries = [Entry("a", TensorSpec("F16", (2,)), lambda: torch.zeros(2))]
    with pytest.raises(CheckpointError, match="'a' is F32"):
        write(tmp_path / "o.safetensors", entries)


def test_tensor_bytes_is_a_zero_copy_view():
    t = torch.arange(6, dtype=torch.int16)
    view = tensor_bytes(t)
    assert bytes(view) == t.numpy().tobytes() and view.readonly
    assert len(tensor_bytes(torch.zeros(0))) == 0
    with pytest.raises(ValueError):
        tensor_bytes(t.reshape(2, 3).t())


def test_file_mappings_find_a_mapped_tensor_in_its_file(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"a": torch.arange(100, dtype=torch.int32), "b": torch.arange(12.0).reshape(3, 4)}, path)
    loaded = torch.load(path, mmap=True, weights_only=True)
    mappings = FileMappings(path)
    assert mappings
    start, end = mappings.file_range(loaded["a"])
    assert path.read_bytes()[start:end] == loaded["a"].numpy().tobytes()
    start, end = mappings.file_range(loaded["b"][1:])  # a contiguous slice: an inner range
    assert path.read_bytes()[start:end] == loaded["b"][1:].numpy().tobytes()
    assert mappings.file_range(loaded["b"].t()) is None  # not contiguous
    assert mappings.file_range(torch.arange(100)) is None  # not in the file
    other = tmp_path / "other.bin"
    other.write_bytes(b"x")
    assert not FileMappings(other)


def test_file_mappings_only_read_addresses(tmp_path):
    # locating a tensor in its file must not touch its memory: an edited private mapping stays edited
    path = tmp_path / "big.pt"
    torch.save({"w": torch.zeros(1 << 20)}, path)
    mapped = torch.load(path, mmap=True, weights_only=True)["w"]
    mapped.add_(1)
    start, end = FileMappings(path).file_range(mapped)
    assert end - start == 4 << 20
    assert mapped.sum().item() == 1 << 20


# --- shards, sizes, index ----------------------------------------------------------------------

def e(key: str, nbytes: int) -> Entry:
    return Entry(key, TensorSpec("U8", (nbytes,)), lambda: None)


def test_split_shards_follows_the_hugging_face_rule():
    entries = [e("a", 4), e("b", 4), e("big", 20), e("c", 3), e("d", 6)]
    groups = split_shards(entries, 10)
    # the big tensor gets its shard at once; the shard being filled goes on after it
    assert [[x.key for x in g] for g in groups] == [["big"], ["a", "b"], ["c", "d"]]
    assert [[x.key for x in g] for g in split_shards(entries, None)] == [["a", "b", "big", "c", "d"]]


def test_shard_names_and_index(tmp_path):
    shards, index = shard_names(tmp_path / "model.safetensors", 3)
    assert [p.name for p in shards] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert index.name == "model.safetensors.index.json"
    assert shard_names(tmp_path / "x.safetensors.index.json", 1)[0][0].name == "x-00001-of-00001.safetensors"
    body = json.loads(index_json({"b": "s2", "a": "s1"}, 42, {"format": "pt"}))
    assert body == {"metadata": {"total_size": 42, "format": "pt"}, "weight_map": {"a": "s1", "b": "s2"}}
    assert list(body["weight_map"]) == ["a", "b"]


@pytest.mark.parametrize("text, expected", [
    ("500MB", 500 * 10**6), ("5GB", 5 * 10**9), ("2GiB", 2 * 2**30), ("1.5GB", 1_500_000_000),
    ("123B", 123), (4096, 4096), ("64 mib", 64 * 2**20), ("10K", 10_000), ("7B", 7),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "5 parsecs", "0B", "-3MB", "1e9"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(BadInputError, match="size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["9" * 310 + "MB", "99999999999999999999999TB", 2**63, "9300000TB"])
def test_a_size_no_file_can_have_is_refused_by_name(text):
    """Trial 5, F22: 310 digits were an OverflowError traceback (float infinity), 23 digits accepted."""
    with pytest.raises(BadInputError, match=r"more bytes than a file can hold \(2\^63\)"):
        parse_size(text)
    assert parse_size("9000000TB") == 9 * 10**18  # just under 2^63


@pytest.mark.parametrize("text", ["500", "0", " 2 ", "1.5"])
def test_a_size_without_a_unit_is_refused_with_a_hint(text):
    """Issue 9: '--max-shard-size 500' meant 500 bytes and silently made 400 shards."""
    with pytest.raises(BadInputError, match=r"no unit.*MB.*2GiB"):
        parse_size(text)


@pytest.mark.parametrize("key, metadata", [("\ud800", None), ("ok", {"note": "x\udc00"})])
def test_a_lone_surrogate_is_refused_by_name_not_a_traceback(key, metadata):
    with pytest.raises(BadInputError, match="lone UTF-16 surrogate"):
        encode_header([Entry(key, TensorSpec("U8", (1,)), lambda: None)], metadata)


def test_a_header_over_the_librarys_limit_is_refused(monkeypatch):
    monkeypatch.setattr(header_encode, "MAX_HEADER_BYTES", 64)
    entries = [Entry(f"k{i}", TensorSpec("U8", (1,)), lambda: None) for i in range(3)]
    with pytest.raises(BadInputError, match="above the library's limit of 64"):
        encode_header(entries)
