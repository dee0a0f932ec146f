"""Damaged .npz archives are bad input (CheckpointError, exit 2) named by file and array, in words a
user can act on; and a name given twice reads the copy numpy.load reads."""
from __future__ import annotations

import struct
import time
import warnings
import zipfile

import pytest

np = pytest.importorskip("numpy")

from mapper_core.cli import main  # noqa: E402
from mapper_core.errors import CheckpointError  # noqa: E402
from mapper_npz import NpzReader  # noqa: E402


def npy(header: str, data: bytes = b"\0" * 16) -> bytes:
    """A .npy member with ``header`` as its dict text, as written, and ``data``: version 1.0, or 2.0 (a
    4-byte header length) for a header past 64 KiB."""
    text = header.encode("latin1")
    if len(text) > 65000:
        text += b" " * (-(12 + len(text) + 1) % 64) + b"\n"
        return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text + data
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def archive(path, members: list[tuple[str, bytes]]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def header(shape: str) -> str:
    return "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape


@pytest.mark.parametrize("shape, said", [
    ("((4,),)", "damaged .npy header: shape is not valid: ((4,),)"),  # numpy's own check, kept
    ("(-4,)", "the header gives the shape [-4], with a negative dimension; the archive is damaged"),
    ("(2**40, 2**30)", "damaged .npy header: the header is not the dict of plain values numpy writes (it holds an "
                       "expression, such as a call; nothing in it was run)"),
    ("__import__('os').getcwd()", "it holds an expression"),
    ("(1099511627776, 1073741824)", "[1099511627776, 1073741824] of float32 (more than 2**63-1 elements, more "
                                    "than numpy can hold) but the member holds 16 bytes"),
    ("(1024, 1024)", "[1024, 1024] of float32 (4,194,304 bytes) but the member holds 16 bytes"),
])
def test_a_bad_header_is_named_in_plain_words(tmp_path, capsys, shape, said):
    path = archive(tmp_path / "bad.npz", [("w.npy", npy(header(shape)))])
    with pytest.raises(CheckpointError) as caught:
        NpzReader(path).specs()
    message = str(caught.value)
    assert message.startswith(f"{path}: array 'w'") and said in message, message
    assert "<ast." not in message and " at 0x" not in message and "(0 bytes)" not in message
    assert main(["inspect", str(path)]) == 2
    assert said in capsys.readouterr().err


def test_a_directory_entry_pointing_at_another_member_is_a_damaged_archive(tmp_path, capsys):
    path = archive(tmp_path / "overlap.npz", [("a.npy", npy(header("(4,)"))), ("b.npy", npy(header("(4,)")))])
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")  # b.npy's central directory entry: its local header offset -> a.npy's
    data[entry + 42:entry + 46] = struct.pack("<I", 0)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"array 'b' cannot be read: the zip archive is damaged \(File name in "
                                              r"directory 'b.npy' and header b'a.npy' differ.\); save the arrays again"):
        NpzReader(path).specs()
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "array 'b'" in err and "plugin" not in err and "BadZipFile" not in err


def test_a_name_given_twice_reads_the_copy_numpy_reads(tmp_path):
    first = np.full(4, 7, dtype=np.float32)
    last = np.arange(4, dtype=np.float32)
    path = archive(tmp_path / "dup.npz", [("w.npy", npy(header("(4,)"), first.tobytes())),
                                          ("w.npy", npy(header("(4,)"), last.tobytes()))])
    with np.load(path) as reference, NpzReader(path) as reader:
        np.testing.assert_array_equal(reference["w"], last)  # zipfile, and so numpy, take the last entry
        np.testing.assert_array_equal(reader.get_tensor("w"), reference["w"])


def dims(n: int, size: int) -> str:
    return "(" + ", ".join([str(size)] * n) + ",)"


# numpy.load refuses each of these too: with its default max_header_size the long headers as "may not be safe to
# load securely"; given a larger max_header_size, it multiplies the shape in int64 (wrapping silently, no error),
# reads that many elements and fails when it reshapes: "maximum supported dimension for an ndarray is currently 64,
# found 1500", or for 64 dims of 2**63-1 "cannot reshape array of size 1 into shape (9223372036854775807, ...)"
# with all 64 of them. Here: a damaged-archive error naming the file and array, the shape cut to its first dims.
@pytest.mark.parametrize("shape, said", [
    (dims(1_500, 2**63 - 1), "a numpy array has at most 64 dimensions, so no numpy wrote it"),
    (dims(100_000, 1), "a numpy array has at most 64 dimensions"),  # 300 KB: numpy parses it in ~1 s
    (dims(64, 2**63 - 1), "(more than 2**63-1 elements, more than numpy can hold) but the member holds 16 bytes"),
    ("(-1, " + dims(60_000, 1)[1:], "with a negative dimension"),
], ids=["1500-huge-dims", "100000-dims-of-1", "64-huge-dims", "negative"])
def test_a_shape_of_many_or_huge_dims_is_refused_at_once_in_one_short_line(tmp_path, capsys, shape, said):
    path = archive(tmp_path / "dims.npz", [("w.npy", npy(header(shape)))])
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as caught:
        NpzReader(path).specs()
    assert time.perf_counter() - started < 20  # the product of 50,000 huge dims alone took seconds
    message = str(caught.value)
    assert message.startswith(f"{path}: array 'w'") and said in message, message
    assert "dimensions)]" in message and len(message) < len(str(path)) + 400, message
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert said in err and "plugin" not in err and "ValueError" not in err and len(err) < 1000, err[:2000]
