"""DCP chunk blobs get the .pt pre-scan before torch reads them (a hostile blob is refused, exit 2, before
anything is allocated), and chunks are streamed into the whole tensor through a bounded buffer."""
from __future__ import annotations

import io
import pickle
import resource
import struct
import zipfile

import pytest
import torch

from dcp_fixtures import save_sharded_dcp
from hostile_torch import archive_with_pickle, records_of, write_archive
from mapper_core.errors import CheckpointError, ExpansionError
from mapper_core.io import dcp_writer
from mapper_core.io.convert import convert
from mapper_core.io.formats import dcp_blob
from mapper_core.io.formats.dcp import DcpReader
from mapper_core.specs import TensorSpec
from pickle_ops import Pickle


def _folder(tmp_path, blobs: dict[str, tuple[TensorSpec, bytes]]):
    """A DCP folder whose data file holds ``blobs`` (key → (what .metadata says, the blob's bytes))."""
    folder = tmp_path / "dcp"
    folder.mkdir()
    data, placed = bytearray(), {}
    for key, (_, blob) in blobs.items():
        placed[key] = (len(data), len(blob))
        data += blob
    (folder / dcp_writer.DATA_NAME).write_bytes(bytes(data))
    with open(folder / ".metadata", "wb") as fh:
        pickle.dump(dcp_writer._metadata({k: spec for k, (spec, _) in blobs.items()}, placed), fh)
    return folder


def _blob(tmp_path, build, *args) -> bytes:
    path = build(tmp_path / "blob.pt", *args)
    return path.read_bytes()


def _tensor_blob(tensor) -> bytes:
    buf = io.BytesIO()
    torch.save(tensor, buf)
    return buf.getvalue()


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _refused(folder, match):
    before = _peak_gib()
    with pytest.raises(ExpansionError, match=match) as caught:
        with DcpReader(folder) as reader:
            reader.get_tensor("w")
    assert caught.value.exit_code == 2 and _peak_gib() - before < 0.5  # refused before torch allocated it
    return str(caught.value)


def test_a_bytearray_request_in_a_blob_is_refused(tmp_path):
    pkl = Pickle().glob("builtins", "bytearray").int(3 << 30).op(b"\x85R").bytes()
    blob = archive_with_pickle(tmp_path / "b.pt", pkl, {}).read_bytes()
    message = _refused(_folder(tmp_path, {"w": (TensorSpec("F32", (4,)), blob)}), "bytearray")
    assert "__0_0.distcp: 'w'" in message and "--allow-expansion" in message


def test_a_huge_stride0_view_in_a_blob_is_refused(tmp_path):
    n = 1 << 28  # 1 GiB of float32 from 4 stored bytes
    pkl = Pickle().tensor("0", "FloatStorage", 1, 0, (n,), (0,)).bytes()
    blob = archive_with_pickle(tmp_path / "b.pt", pkl, {"0": struct.pack("<f", 1.5)}).read_bytes()
    _refused(_folder(tmp_path, {"w": (TensorSpec("F32", (n,)), blob)}), "stride \\[0\\]")


def test_a_deflate_bomb_in_a_blob_is_refused(tmp_path):
    n = 300 << 20  # past the 256 MiB any checkpoint may grow by
    pkl = Pickle().tensor("0", "ByteStorage", n, 0, (n,), (1,)).bytes()
    records = {"data.pkl": pkl, "byteorder": b"little", "version": b"3\n"}
    path = write_archive(tmp_path / "b.pt", records)
    info = zipfile.ZipInfo("archive/data/0")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "a") as zf, zf.open(info, "w", force_zip64=True) as out:
        zeros = bytes(8 << 20)
        for _ in range(n // len(zeros)):
            out.write(zeros)
    blob = path.read_bytes()
    assert len(blob) < n // 100
    _refused(_folder(tmp_path, {"w": (TensorSpec("U8", (n,)), blob)}), "compressed with deflate")


def test_code_in_a_blob_is_refused_by_weights_only(tmp_path):
    pkl = Pickle().glob("os", "system").text("echo hi").op(b"\x85R").bytes()
    blob = archive_with_pickle(tmp_path / "b.pt", pkl, {}).read_bytes()
    with pytest.raises(CheckpointError, match="not a readable torch.save blob"):
        with DcpReader(_folder(tmp_path, {"w": (TensorSpec("F32", (4,)), blob)})) as reader:
            reader.get_tensor("w")


def test_views_and_big_endian_blobs_fall_back_to_torch_load(tmp_path):
    torch.manual_seed(0)
    base = torch.randn(5, 3)
    view = base.t()  # non-contiguous: torch.save keeps the storage and the strides
    torch.save(base[1:, 0].contiguous(), tmp_path / "be.pt")
    records = records_of(tmp_path / "be.pt")
    records["data/0"] = b"".join(records["data/0"][i:i + 4][::-1] for i in range(0, len(records["data/0"]), 4))
    records["byteorder"] = b"big"  # as a big-endian machine writes it: torch.load swaps the bytes back
    big = write_archive(tmp_path / "be.pt", records).read_bytes()
    folder = _folder(tmp_path, {"w": (TensorSpec("F32", (3, 5)), _tensor_blob(view)),
                                "v": (TensorSpec("F32", (4,)), big)})
    with DcpReader(folder) as reader:
        assert torch.equal(reader.get_tensor("w"), view)
        assert torch.equal(reader.get_tensor("v"), base[1:, 0])


def test_chunks_stream_through_a_small_buffer(tmp_path, monkeypatch):
    torch.manual_seed(2)
    state = {"rows": torch.randn(9, 7), "cols": torch.randn(6, 11).to(torch.bfloat16), "flat": torch.randn(301)}
    folder = save_sharded_dcp(state, tmp_path / "sharded", {"rows": 0, "cols": 1, "flat": 0})
    monkeypatch.setattr(dcp_blob, "BUFFER", 40)  # smaller than a row of "rows" and of "flat": every path
    reads = []
    real = dcp_blob._read
    monkeypatch.setattr(dcp_blob, "_read", lambda fd, off, buf, n, *a: (reads.append(n), real(fd, off, buf, n, *a))[1])
    with DcpReader(folder) as reader:
        for key, want in state.items():
            assert torch.equal(reader.get_tensor(key), want), key
    assert reads and max(reads) <= 40


def test_allow_expansion_reads_the_view(tmp_path):
    pkl = Pickle().tensor("0", "FloatStorage", 1, 0, (1000,), (0,)).bytes()
    blob = archive_with_pickle(tmp_path / "b.pt", pkl, {"0": struct.pack("<f", 1.5)}).read_bytes()
    folder = _folder(tmp_path, {"w": (TensorSpec("F32", (1000,)), blob)})
    out = tmp_path / "out.safetensors"
    convert(folder, out, reader=DcpReader(folder, allow_expansion=True))
    from safetensors.torch import load_file

    assert torch.equal(load_file(out)["w"], torch.full((1000,), 1.5))
