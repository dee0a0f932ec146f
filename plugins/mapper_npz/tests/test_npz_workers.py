"""An NpzReader shared by forked processes (``mapper convert --workers N``): each reads on its own.

A forked process inherits the reader's open file, and with it the file's offset, which the kernel
keeps per open file, not per process: reads that seek and then read collide, and zip's CRC check
then blames an intact archive ('Bad CRC-32', 'invalid block type'). The reader reads by position
instead (``pread``), so the offset another process moves is never used."""
from __future__ import annotations

import os

import numpy as np
import pytest

from mapper_core.cli import main
from mapper_npz import NpzReader

RNG = np.random.default_rng(0)
ARRAYS = {f"l{i}.w": RNG.standard_normal((64, 100)).astype(np.float32) for i in range(8)}


def _descriptors_of(path) -> list[int]:
    """This process's file descriptors open on ``path`` (Linux: /proc/self/fd)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.path.realpath(f"/proc/self/fd/{name}") == os.path.realpath(path):
                found.append(int(name))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
@pytest.mark.parametrize("save", ["savez", "savez_compressed"])
def test_reads_do_not_depend_on_the_shared_file_offset(tmp_path, save):
    """Between two reads, move the offset of every descriptor open on the archive, as another process
    sharing it does: every array still reads right (the old reader failed every other array)."""
    path = tmp_path / "m.npz"
    getattr(np, save)(path, **ARRAYS)
    with NpzReader(path) as reader:
        reader.specs()
        assert _descriptors_of(path)
        for key, want in ARRAYS.items():
            for fd in _descriptors_of(path):
                os.lseek(fd, 0, os.SEEK_SET)
            np.testing.assert_array_equal(reader.get_tensor(key), want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_convert_with_workers_equals_one_process(tmp_path, capsys):
    path = tmp_path / "m.npz"
    np.savez_compressed(path, **{f"l{i}.w": RNG.standard_normal((64, 256)).astype(np.float32) for i in range(24)})
    outputs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        code = main(["convert", str(path), str(out / "m.safetensors.index.json"), "--max-shard-size", "200KB",
                     "--workers", workers, "--verify"])
        assert code == 0, capsys.readouterr().err
        outputs[workers] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(outputs["1"]) > 4 and outputs["1"] == outputs["2"]


def test_damaged_compressed_data_is_a_checkpoint_error(tmp_path):
    """zlib's own error (what the collisions above produced) is said as the archive's damage, not raised raw."""
    import struct
    import zipfile

    from mapper_core.errors import CheckpointError

    path = tmp_path / "m.npz"
    np.savez_compressed(path, w=np.zeros(1000, dtype=np.float32))
    info = zipfile.ZipFile(path).getinfo("w.npy")
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_len + extra_len] = 0x07  # a final deflate block of the invalid type 3
    path.write_bytes(bytes(data))
    with NpzReader(path) as reader, pytest.raises(CheckpointError, match="'w': damaged .npy header.*invalid block type"):
        reader.specs()
