"""Hostile safetensors files, indexes and spec files (issue 10): a clear refusal naming the file, never a
traceback; shards stay in the index's folder; what the official library reads, we read the same."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.formats.safetensors_format import read_header
from safetensors_corpus import CORPUS, blob, entry  # tests/helpers


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def shard_and_index(tmp: Path, weight_map: dict[str, str] | None = None, name: str = "s.safetensors") -> Path:
    write(tmp / name, blob({"a": entry("U8", [2], 0, 2)}, b"\1\2"))
    index = tmp / "m.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"a": name} if weight_map is None else weight_map}))
    return index


# --- tracebacks that became messages ---------------------------------------------------------


@pytest.mark.parametrize("case, expected", [
    ("nested-100000", "nested too deeply"), ("dtype-list", "unknown dtype [\"F32\"]"),
    ("dtype-object", "unknown dtype {\"F\": 32}"), ("surrogate-key", "lone UTF-16 surrogate"),
    ("surrogate-metadata", "lone UTF-16 surrogate"), ("zero-dim-2**63", "at most 2**63-1"),
    ("metadata-list", "__metadata__ must be an object"), ("f4-odd", "even last dimension"), ("f6-partial-byte", "not a whole number of bytes"),
])
def test_hostile_headers_are_refused_by_name(tmp_path, case, expected):
    path = write(tmp_path / "h.safetensors", CORPUS[case])
    with pytest.raises(CheckpointError) as info:
        read_header(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_the_cli_says_which_file_and_key(tmp_path, mapper):
    path = write(tmp_path / "h.safetensors", CORPUS["dtype-list"])
    for command in (["inspect", path], ["convert", path, tmp_path / "o.safetensors"]):
        proc = mapper(*command)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert str(path) in proc.stderr and "tensor 'a'" in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("text, expected", [
    ('{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"weight_map": {"\\ud800": "s.safetensors"}}', "lone UTF-16 surrogate"),
    ('{"weight_map": {}}', "weight_map is empty"),
    ('{"metadata": {"total_size": ' + "9" * 5000 + '}, "weight_map": {}}', "it holds a number of 5,000 digits"),
    ('{"weight_map": {"a": "s.safetensors"}, "weight_map": {}}', "appears twice"),
])
def test_hostile_indexes_are_refused_by_name(tmp_path, text, expected):
    index = shard_and_index(tmp_path)
    index.write_text(text)
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(index)
    assert str(index) in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"\\ud800": {"dtype": "F32", "shape": [1]}}', "lone UTF-16 surrogate"),
    ('{"a": {"dtype": ["F32"], "shape": [1]}}', "unknown dtype"),
    ('{"a": {"dtype": "F32", "shape": [' + "9" * 4400 + ']}}', "it holds a number of 4,400 digits"),
])
def test_hostile_spec_files_are_refused_by_name(tmp_path, text, expected):
    path = tmp_path / "spec.json"
    path.write_text(text)
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(path).specs()
    assert str(path) in str(info.value) and expected in str(info.value)


# --- shards: what they are and where they live ---------------------------------------------------


def test_a_number_too_long_for_python_is_said_without_pythons_advice(tmp_path, mapper):
    path = write(tmp_path / "n.safetensors", blob(None, raw=b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],'
                                                            b'"data_offsets":[0,4]}}') + bytes(4))
    done = mapper("inspect", path)
    assert (done.returncode, done.stderr) == (2, (
        f"mapper: error: {path}: safetensors header: not valid JSON: it holds a number of 5,000 digits; a checkpoint's "
        "numbers (shapes, byte offsets, sizes) have at most 20, so the file is damaged or hostile\n"))


def test_a_shard_name_too_long_for_the_file_system(tmp_path):
    index = shard_and_index(tmp_path, {"a": "x" * 300 + ".safetensors"})
    with pytest.raises(CheckpointError, match="name too long") as info:
        open_checkpoint(index)
    assert str(index) in str(info.value)


def test_a_shard_that_is_a_folder_a_device_or_a_loop_is_said_to_be_one(tmp_path):
    index = shard_and_index(tmp_path, {"a": "dir.safetensors", "b": "dev.safetensors", "c": "loop.safetensors"})
    (tmp_path / "dir.safetensors").mkdir()
    os.symlink("/dev/null", tmp_path / "dev.safetensors")
    os.symlink("loop.safetensors", tmp_path / "loop.safetensors")
    for name, expected in [("dir", "is a folder"), ("dev", "is a device"), ("loop", "symlink loop")]:
        index.write_text(json.dumps({"weight_map": {"a": f"{name}.safetensors"}}))
        with pytest.raises(CheckpointError, match=expected):
            open_checkpoint(index)


@pytest.mark.needs_torch
def test_a_symlinked_shard_outside_the_folder_is_refused_unless_allowed(tmp_path, mapper):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write(outside / "real.safetensors", blob({"a": entry("U8", [2], 0, 2)}, b"\1\2"))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    index = shard_and_index(folder)
    (folder / "s.safetensors").unlink()
    os.symlink(outside / "real.safetensors", folder / "s.safetensors")
    with pytest.raises(CheckpointError, match="outside the index's folder") as info:
        open_checkpoint(index)
    assert "--allow-outside-shards" in str(info.value)
    with open_checkpoint(index, allow_outside_shards=True) as reader:
        assert reader.get_tensor("a").tolist() == [1, 2]
    assert mapper("inspect", index).returncode == 2
    proc = mapper("convert", index, tmp_path / "o.safetensors", "--allow-outside-shards")
    assert proc.returncode == 0, proc.stderr


def test_a_symlink_inside_the_folder_is_fine(tmp_path):
    index = shard_and_index(tmp_path, name="real.safetensors")
    os.symlink("real.safetensors", tmp_path / "alias.safetensors")
    index.write_text(json.dumps({"weight_map": {"a": "alias.safetensors"}}))
    with open_checkpoint(index) as reader:
        assert list(reader.specs()) == ["a"]


# --- what the official library reads, read the same way ---------------------------------------------


def test_a_zero_element_tensor_with_a_huge_dimension_is_refused_before_writing(tmp_path, mapper):
    src = write(tmp_path / "z.safetensors", CORPUS["zero-dim-2**63"])
    proc = mapper("convert", src, tmp_path / "o.safetensors", "--verify")
    assert proc.returncode == 2 and "2**63-1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.needs_torch
def test_leading_whitespace_and_unknown_fields_are_read(tmp_path, mapper):
    from safetensors import safe_open

    src = write(tmp_path / "w.safetensors",
                blob(None, b"\0\0\x80?", raw=(' \n{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],'
                                               '"quant":{"x":[1]}}}').encode()))
    out = tmp_path / "o.safetensors"
    assert mapper("convert", src, out, "--verify").returncode == 0
    with safe_open(str(out), "pt") as f:
        assert f.get_tensor("a").tolist() == [1.0]


@pytest.mark.needs_torch
def test_a_sources_format_metadata_is_kept(tmp_path):
    from safetensors import safe_open

    from mapper_core.io.convert import convert

    src = write(tmp_path / "np.safetensors", CORPUS["format-np"])
    convert(src, tmp_path / "o.safetensors")
    with safe_open(str(tmp_path / "o.safetensors"), "numpy") as f:
        assert f.metadata()["format"] == "np"


def test_an_output_header_over_the_librarys_limit_is_refused_before_writing(tmp_path, mapper):
    # the source's header is just under the limit; the output adds mapper.* metadata and would not open
    body = json.dumps({"__metadata__": {"big": ""}, "a": entry("F32", [1], 0, 4)}, separators=(",", ":"))
    filler = 100_000_000 - len(body) - 8
    text = body.replace('"big":""', '"big":"' + "x" * filler + '"')
    text += " " * (-len(text) % 8)
    assert len(text) <= 100_000_000
    src = write(tmp_path / "big.safetensors", blob(None, b"\0\0\x80?", raw=text.encode()))
    del text, body
    proc = mapper("convert", src, tmp_path / "o.safetensors")
    assert proc.returncode == 2 and "100,000,000" in proc.stderr
    assert os.listdir(tmp_path) == ["big.safetensors"]


NEW_DTYPES = {"F4": ([2, 4], 4), "F6_E2M3": ([4], 3), "F6_E3M2": ([8], 6), "F8_E8M0": ([3], 3),
              "F8_E4M3FNUZ": ([2], 2), "F8_E5M2FNUZ": ([2], 2), "C64": ([2], 16)}


@pytest.mark.needs_torch
def test_newer_dtypes_are_copied_byte_for_byte_and_renamed(tmp_path, mapper):
    from safetensors import safe_open

    header, data = {}, b""
    for i, (dtype, (shape, n)) in enumerate(NEW_DTYPES.items()):
        header[f"x.{dtype}"] = entry(dtype, shape, len(data), len(data) + n)
        data += bytes((i * 37 + j) % 256 for j in range(n))
    src = write(tmp_path / "new.safetensors", blob(header, data))
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: 'x\\.(.+)'\n    target: 'y.{1}'\n")
    out = tmp_path / "o.safetensors"
    proc = mapper("convert", src, out, "--rules", tmp_path / "r.yaml", "--verify")
    assert proc.returncode == 0, proc.stderr
    before, after = read_header(src), read_header(out)
    src_bytes, out_bytes = src.read_bytes(), out.read_bytes()
    for key, spec in before.specs.items():
        new = "y." + key[2:]
        assert after.specs[new] == spec
        b0, b1 = before.offsets[key]
        a0, a1 = after.offsets[new]
        assert out_bytes[after.data_start + a0:after.data_start + a1] == src_bytes[before.data_start + b0:before.data_start + b1]
    with safe_open(str(out), "pt") as f:  # the library reads every type torch has
        for key in f.keys():
            if "F6" not in key:
                f.get_tensor(key)


@pytest.mark.needs_torch
def test_torch_dtypes_the_library_stores_are_mapped(tmp_path):
    import torch
    from safetensors.torch import load_file

    from mapper_core.io.convert import convert

    raw = torch.arange(8, dtype=torch.uint8).reshape(2, 4)
    tensors = {"e8m0": raw.view(torch.float8_e8m0fnu), "e4fnuz": raw.view(torch.float8_e4m3fnuz),
               "e5fnuz": raw.view(torch.float8_e5m2fnuz), "f4": raw.view(torch.float4_e2m1fn_x2),
               "c64": torch.complex(torch.arange(3.0), -torch.arange(3.0))}
    torch.save(tensors, tmp_path / "m.pt")
    result = convert(tmp_path / "m.pt", tmp_path / "o.safetensors", verify=True)
    assert result.checked == len(tensors)
    loaded = load_file(str(tmp_path / "o.safetensors"))
    for key, t in tensors.items():
        assert loaded[key].dtype == t.dtype and loaded[key].shape == t.shape
        assert loaded[key].view(torch.uint8).equal(t.view(torch.uint8))
    assert read_header(tmp_path / "o.safetensors").specs["f4"].shape == (2, 8)  # values, as save_file writes


@pytest.mark.needs_torch
def test_the_shard_split_is_huggingface_hubs(tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    import torch

    from mapper_core.io.convert import convert

    sizes = [3, 5, 40, 2, 9, 1, 30, 7, 7, 0, 12, 4]
    tensors = {f"t{i:02d}": torch.zeros(n, dtype=torch.uint8) + i for i, n in enumerate(sizes)}
    torch.save(tensors, tmp_path / "m.pt")
    for limit in [10, 12, 20, 45]:
        split = hub.split_torch_state_dict_into_shards(tensors, max_shard_size=limit)
        theirs = sorted(sorted(keys) for keys in split.filename_to_tensors.values())
        out = tmp_path / f"o{limit}.safetensors"
        convert(tmp_path / "m.pt", out, max_shard_size=limit)
        weight_map = json.loads((tmp_path / f"o{limit}.safetensors.index.json").read_text())["weight_map"] \
            if len(theirs) > 1 else {k: out.name for k in tensors}
        groups: dict[str, list[str]] = {}
        for key, shard in weight_map.items():
            groups.setdefault(shard, []).append(key)
        assert sorted(sorted(g) for g in groups.values()) == theirs, limit
        # shard numbers in the same order as huggingface_hub's file names
        ours_by_name = [sorted(groups[name]) for name in sorted(groups)]
        assert ours_by_name == [sorted(split.filename_to_tensors[n]) for n in sorted(split.filename_to_tensors)]


def test_a_header_length_field_is_little_endian_u64(tmp_path):
    # 100,000,001 is refused by its length alone, before any read of that size
    path = write(tmp_path / "l.safetensors", struct.pack("<Q", 100_000_001) + b"{}")
    with pytest.raises(CheckpointError, match="100,000,000"):
        read_header(path)
