"""mapper-npz against numpy itself: specs from headers equal what numpy.load finds, arrays equal,
files we write load with numpy.load, and nothing is ever unpickled."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mapper_core.cli import main
from mapper_core.errors import CheckpointError
from mapper_core.plugins import contributions, get_plugin_manager, open_checkpoint
from mapper_npz import NpzReader, NpzWriteError, convert_to_npz, save_npz, sniff_npz

RNG = np.random.default_rng(0)
ARRAYS = {
    "conv.weight": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32),
    "conv.bias": RNG.standard_normal(4).astype(np.float16),
    "steps": np.arange(5, dtype=np.int64),
    "mask": np.array([True, False, True]),
    "scalar": np.array(3.5),
    "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
    "fortran": np.asfortranarray(RNG.standard_normal((3, 5))),
    "nested/name": np.zeros((0, 2), dtype=np.uint8),
}
NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64", np.dtype(bool): "BOOL",
         np.dtype(np.float64): "F64", np.dtype(">i4"): "I32", np.dtype(np.uint8): "U8"}


@pytest.fixture(params=["savez", "savez_compressed"])
def npz(request, tmp_path):
    path = tmp_path / "arrays.npz"
    getattr(np, request.param)(path, **ARRAYS)
    return path


def test_specs_and_arrays_equal_numpy_load(npz):
    with np.load(npz, allow_pickle=False) as ref, NpzReader(npz) as reader:
        specs = reader.specs()
        assert list(specs) == list(ref.files)
        for key in ref.files:
            assert (specs[key].dtype, specs[key].shape) == (NAMES[ref[key].dtype], ref[key].shape)
            got = reader.get_tensor(key)
            assert got.dtype.isnative and got.flags.c_contiguous and got.flags.writeable
            np.testing.assert_array_equal(got, ref[key])


def test_specs_read_headers_only(npz, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("specs() must not read array data")

    monkeypatch.setattr(np.lib.format, "read_array", no_data)
    monkeypatch.setattr(np, "frombuffer", no_data)
    with NpzReader(npz) as reader:
        assert reader.specs()["conv.weight"].shape == (4, 3, 3, 3)


def test_object_arrays_are_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "objects.npz"
    np.savez(path, ok=np.ones(2), bad=np.array([{"a": 1}], dtype=object))
    import pickle

    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    with NpzReader(path) as reader, pytest.raises(CheckpointError, match="'bad' holds Python objects.*never unpickles"):
        reader.specs()


def test_a_header_claiming_more_data_than_the_member_holds_is_refused(tmp_path):
    path = tmp_path / "lies.npz"
    header = np.lib.format  # a v1.0 header for a [1000000] float64 array, with 8 bytes of data
    with zipfile.ZipFile(path, "w") as zf, zf.open("x.npy", "w") as f:
        header.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (1000000,)})
        f.write(b"\0" * 8)
    with NpzReader(path) as reader, pytest.raises(CheckpointError, match="'x': the header says \\[1000000\\].*damaged"):
        reader.specs()


def test_sniff_and_a_zip_that_is_not_an_npz(tmp_path, npz):
    assert sniff_npz(npz)
    other = tmp_path / "other.npz"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hi")
    assert not sniff_npz(other)
    with pytest.raises(CheckpointError, match="'readme.txt' is not a .npy array"):
        NpzReader(other)


@pytest.mark.parametrize("compressed", [False, True])
def test_written_files_load_with_numpy(tmp_path, compressed):
    tensors = {"a.weight": torch.randn(3, 4), "a.bias": torch.arange(3), "flag": torch.tensor([True])}
    path = save_npz(tmp_path / "out.npz", tensors, compressed=compressed)
    with np.load(path, allow_pickle=False) as ref:
        assert sorted(ref.files) == sorted(tensors)
        for key, tensor in tensors.items():
            np.testing.assert_array_equal(ref[key], tensor.numpy())
    with pytest.raises(Exception, match="already exists"):
        save_npz(path, tensors)


def test_bf16_and_bad_names_are_refused_and_nothing_is_left_behind(tmp_path):
    with pytest.raises(NpzWriteError, match="BF16.*cast"):
        save_npz(tmp_path / "x.npz", {"ok": torch.ones(1), "w": torch.ones(2, dtype=torch.bfloat16)})
    with pytest.raises(NpzWriteError, match="cannot name an .npz member"):
        save_npz(tmp_path / "x.npz", {"../escape": torch.ones(1)})
    assert list(tmp_path.iterdir()) == []


def test_the_plugin_is_found_through_its_entry_point_and_converts_both_ways(npz, tmp_path, capsys):
    found = contributions(get_plugin_manager(env={}))
    assert found.format_plugins["npz"] == "npz"
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nname: prefix\nrules:\n  - match: '(.+)'\n    target: 'model.{1}'\n")
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(npz), str(out), "--rules", str(rules), "--verify"]) == 0
    converted = load_file(out)
    with np.load(npz, allow_pickle=False) as ref:
        for key in ref.files:
            np.testing.assert_array_equal(converted[f"model.{key}"].numpy(), ref[key])
    # back: safetensors → npz through the rules read backwards (names only)
    back = tmp_path / "back.npz"
    undo = tmp_path / "undo.yaml"
    undo.write_text("version: 1\nname: unprefix\nrules:\n  - match: 'model\\.(.+)'\n    target: '{1}'\n")
    convert_to_npz(out, back, undo)
    with np.load(npz, allow_pickle=False) as ref, np.load(back, allow_pickle=False) as again:
        assert sorted(again.files) == sorted(ref.files)
        for key in ref.files:
            np.testing.assert_array_equal(again[key], ref[key])


def test_inspect_and_open_checkpoint(npz, capsys):
    assert main(["inspect", str(npz)]) == 0
    assert "conv.weight" in capsys.readouterr().out
    with open_checkpoint(npz) as reader:  # the default plugin manager finds the entry point
        assert torch.equal(reader.get_tensor("steps"), torch.arange(5))


def test_convert_to_npz_applies_transforms(tmp_path):
    src = tmp_path / "lin.safetensors"
    save_file({"fc.weight": torch.randn(4, 3)}, src)
    rules = tmp_path / "conv.yaml"
    rules.write_text("version: 1\nrules:\n  - match: 'fc\\.weight'\n    target: 'conv.weight'\n"
                     "    transform: [{unsqueeze: {dim: 2}}]\n")
    out = convert_to_npz(src, tmp_path / "conv.npz", rules, compressed=True)
    with np.load(out, allow_pickle=False) as ref:
        np.testing.assert_array_equal(ref["conv.weight"], load_file(src)["fc.weight"].unsqueeze(2).numpy())
