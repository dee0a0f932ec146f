"""A compressed .npz cannot make the reader allocate gigabytes: what its arrays inflate to past the
bytes the file holds is charged to the budget .pt and DCP files have (the larger of 256 MiB and 4x
the file's size, unless allow_expansion / --allow-expansion), before anything is allocated, from the
zip's declared sizes, which are never believed past what the file can hold."""
from __future__ import annotations

import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy

from mapper_core.cli import main
from mapper_core.errors import ExpansionError
from mapper_core.io.formats import torch_archive
from mapper_npz import NpzReader

MIB = 2**20


def _bomb(path, nbytes: int, level: int = 9) -> None:
    """One deflated member 'w.npy': a float32 vector of ``nbytes`` zero bytes, written in pieces."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf, \
            zf.open("w.npy", "w", force_zip64=True) as f:
        npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4,)})
        zeros = bytes(min(nbytes, 16 * MIB))
        for start in range(0, nbytes, len(zeros)):
            f.write(zeros[:nbytes - start])


@pytest.fixture
def small_floor(monkeypatch):
    """A floor of 1 MiB instead of 256 MiB, so the bombs stay small."""
    monkeypatch.setattr(torch_archive, "EXPANSION_FLOOR", MIB)


def test_a_bomb_is_refused_before_it_is_inflated_and_allowed_with_allow_expansion(tmp_path, small_floor, capsys):
    src = tmp_path / "bomb.npz"
    _bomb(src, 8 * MIB)
    assert src.stat().st_size < 64 * 1024
    with NpzReader(src) as reader:
        assert reader.specs()["w"].shape == (2 * MIB,)  # the headers are still read: inspect and plan work
        tracemalloc.start()
        try:
            with pytest.raises(ExpansionError) as caught:
                reader.get_tensor("w")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < MIB  # refused before the array's 8 MiB were allocated
    message = str(caught.value)
    assert str(src) in message and "array 'w'" in message and "--allow-expansion" in message

    out = tmp_path / "out.safetensors"
    assert main(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert "array 'w'" in err and "memory bombs" in err and "Traceback" not in err and not out.exists()
    assert main(["convert", str(src), str(out), "--allow-expansion"]) == 0
    from safetensors.numpy import load_file

    assert not load_file(out)["w"].any() and load_file(out)["w"].shape == (2 * MIB,)


def test_an_ordinary_compressed_archive_is_within_the_budget(tmp_path, small_floor):
    rng = np.random.default_rng(0)
    arrays = {f"w{i}": rng.standard_normal((256, 256)).astype(np.float32) for i in range(4)}
    path = tmp_path / "ok.npz"
    np.savez_compressed(path, **arrays)
    with NpzReader(path) as reader:
        for _ in range(3):  # read again (as --verify does): charged once
            for key, want in arrays.items():
                np.testing.assert_array_equal(reader.get_tensor(key), want)


def _set_sizes(path, member: str, size: int) -> None:
    """Declare ``size`` as the member's compressed and uncompressed size, in its local header and the
    central directory alike (the zip's own records lie; nothing else changes)."""
    info = zipfile.ZipFile(path).getinfo(member)
    data = bytearray(path.read_bytes())
    struct.pack_into("<II", data, info.header_offset + 18, size, size)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<II", data, central + 20, size, size)
    path.write_bytes(bytes(data))


def test_declared_sizes_past_the_end_of_the_file_are_not_believed(tmp_path, small_floor):
    """A stored member whose zip records (and .npy header) claim 64 MiB in a file of a few hundred bytes:
    the size the file cannot hold is expansion too, refused before the 64 MiB are allocated."""
    path = tmp_path / "lies.npz"
    with zipfile.ZipFile(path, "w") as zf, zf.open("w.npy", "w") as f:
        npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (16 * MIB,)})
        f.write(b"\0" * 16)
    with zipfile.ZipFile(path) as zf:
        with zf.open("w.npy") as f:
            npy.read_magic(f)
            npy.read_array_header_1_0(f)
            header_len = f.tell()
    _set_sizes(path, "w.npy", header_len + 64 * MIB)
    with NpzReader(path) as reader:
        assert reader.specs()["w"].shape == (16 * MIB,)
        tracemalloc.start()
        try:
            with pytest.raises(ExpansionError, match="array 'w'"):
                reader.get_tensor("w")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < MIB


@pytest.mark.slow
def test_the_default_budget_refuses_a_real_sized_bomb(tmp_path):
    """288 MiB of zeros in a 1.3 MB file: past 256 MiB, refused without allocating it."""
    src = tmp_path / "bomb.npz"
    _bomb(src, 288 * MIB, level=1)
    with NpzReader(src) as reader:
        tracemalloc.start()
        try:
            with pytest.raises(ExpansionError, match="past the limit of 256.0 MiB"):
                reader.get_tensor("w")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 16 * MIB
