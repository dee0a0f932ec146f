"""Hostile torch checkpoints, built by hand where ``torch.save`` cannot make them.

Every builder writes a small file into a folder the test gives (``tmp_path``) and returns its
path. The zip archives copy the layout ``torch.save`` writes (``archive/data.pkl``,
``archive/byteorder``, ``archive/data/N``, ...); only the part under test is changed:
a record's compression, its length, the byte order, or the pickle itself (written opcode by
opcode, so it can ask for what ``torch.save`` never would).
"""
from __future__ import annotations

import pickle
import struct
import warnings
import zipfile
from pathlib import Path

import torch

from pickle_ops import Pickle  # tests/helpers

PREFIX = "archive"


def records_of(path: Path) -> dict[str, bytes]:
    """Every record of a torch zip archive, by name without the archive's folder."""
    with zipfile.ZipFile(path) as zf:
        return {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}


def write_archive(path: Path, records: dict[str, bytes], compress: dict[str, int] | None = None) -> Path:
    """A torch-style zip of ``records`` (stored, unless ``compress`` gives a record's method)."""
    compress = compress or {}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in records.items():
            zf.writestr(zipfile.ZipInfo(f"{PREFIX}/{name}"), data,
                        compress_type=compress.get(name, zipfile.ZIP_STORED))
    return path


def saved(path: Path, state: dict) -> dict[str, bytes]:
    """The records ``torch.save(state)`` writes."""
    torch.save(state, path)
    return records_of(path)


def big_endian(path: Path, state: dict) -> Path:
    """``state`` saved as a big-endian machine would: byteorder 'big', every element's bytes reversed."""
    records = saved(path, state)
    sizes = {}
    for t in state.values():
        storage = t.untyped_storage()
        sizes[storage.data_ptr()] = t.element_size()
    # torch.save numbers storages 0, 1, ... in the order it meets them: the dict's order here
    order = list(dict.fromkeys(t.untyped_storage().data_ptr() for t in state.values()))
    for i, ptr in enumerate(order):
        name, size = f"data/{i}", sizes[ptr]
        data = records[name]
        records[name] = b"".join(data[j:j + size][::-1] for j in range(0, len(data), size))
    records["byteorder"] = b"big"
    return write_archive(path, records)


def deflated_storage(path: Path, state: dict) -> Path:
    """``state`` with every storage record compressed with deflate (torch.save never does this)."""
    records = saved(path, state)
    return write_archive(path, records, {n: zipfile.ZIP_DEFLATED for n in records if n.startswith("data/")})


def short_storage(path: Path, state: dict, keep: int) -> Path:
    """``state`` with storage record 0 cut to its first ``keep`` bytes."""
    records = saved(path, state)
    records["data/0"] = records["data/0"][:keep]
    return write_archive(path, records)


def record_twice(path: Path, state: dict, name: str, first: bytes) -> Path:
    """``state`` saved, then record ``name`` written twice: first ``first`` deflated in its usual place,
    the saved bytes stored again at the end (two entries of one name in the zip directory)."""
    records = saved(path, state)
    with zipfile.ZipFile(path, "w") as zf:
        for record, data in records.items():
            method = zipfile.ZIP_DEFLATED if record == name else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(f"{PREFIX}/{record}"), first if record == name else data, compress_type=method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name" is the point
            zf.writestr(zipfile.ZipInfo(f"{PREFIX}/{name}"), records[name])
    return path


def archive_with_pickle(path: Path, pkl: bytes, storages: dict[str, bytes]) -> Path:
    """A torch zip whose data.pkl is ``pkl`` (written by hand) and whose storages are ``storages``."""
    records = {"data.pkl": pkl, "byteorder": b"little", "version": b"3\n"}
    records.update({f"data/{k}": v for k, v in storages.items()})
    return write_archive(path, records)


def stride0_view(path: Path, length: int) -> Path:
    """One float32 element viewed ``length`` times through stride 0: ``length * 4`` bytes when written."""
    pkl = Pickle().op(b"}").text("w").tensor("0", "FloatStorage", 1, 0, (length,), (0,)).op(b"s").bytes()
    return archive_with_pickle(path, pkl, {"0": struct.pack("<f", 1.5)})


def bytearray_bomb(path: Path, nbytes: int) -> Path:
    """A small state dict whose pickle also asks for ``bytearray(nbytes)`` (allowed by weights_only)."""
    pkl = Pickle().op(b"}").text("w").tensor("0", "FloatStorage", 1, 0, (1,), (1,)).op(b"s")
    pkl.text("pad").glob("builtins", "bytearray").int(nbytes).op(b"\x85R").op(b"s")
    return archive_with_pickle(path, pkl.bytes(), {"0": struct.pack("<f", 1.5)})


def legacy_bytearray_bomb(path: Path, nbytes: int) -> Path:
    """The same request in torch's legacy (non-zip) format: four pickles, then the storages."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    head = magic + pickle.dumps(1001, protocol=2) + pickle.dumps({"protocol_version": 1001,
                                                                   "little_endian": True,
                                                                   "type_sizes": {"short": 2, "int": 4, "long": 4}},
                                                                  protocol=2)
    pkl = Pickle().op(b"}").text("pad").glob("builtins", "bytearray").int(nbytes).op(b"\x85R").op(b"s").bytes()
    path.write_bytes(head + pkl + pickle.dumps([], protocol=2))
    return path


def deflate_bomb(path: Path, nbytes: int, record: str = "data.pkl") -> Path:
    """A valid small checkpoint whose ``record`` is padded with ``nbytes`` zeros and deflated.

    For ``data.pkl`` the zeros follow the pickle's STOP (torch reads the whole record first);
    for a storage, the pickle declares the padded storage."""
    if record == "data.pkl":
        pkl = Pickle().op(b"}").text("w").tensor("0", "ByteStorage", 1, 0, (1,), (1,)).op(b"s").bytes()
        records = {"data.pkl": pkl + bytes(nbytes), "byteorder": b"little", "version": b"3\n", "data/0": b"\x01"}
    else:
        pkl = Pickle().op(b"}").text("w").tensor("0", "ByteStorage", nbytes, 0, (nbytes,), (1,)).op(b"s").bytes()
        records = {"data.pkl": pkl, "byteorder": b"little", "version": b"3\n", "data/0": bytes(nbytes)}
    return write_archive(path, records, {record: zipfile.ZIP_DEFLATED})


def list_bomb(path: Path, count: int) -> Path:
    """A deflated data.pkl of ``{'l': [[], [], ...]}``: ``count`` empty lists, one byte of pickle each
    (15 M of them deflate to 15 KB and unpickle to gigabytes)."""
    pkl = Pickle().op(b"}").text("l").op(b"](" + b"]" * count + b"es").bytes()
    return write_archive(path, {"data.pkl": pkl, "byteorder": b"little", "version": b"3\n"},
                         {"data.pkl": zipfile.ZIP_DEFLATED})


def central_entries(data: bytes) -> dict[str, tuple[int, str]]:
    """Where each record's entry of the zip's central directory starts, and its full name, by the name
    without the archive's folder (torch.save names that folder after the file)."""
    found, at = {}, data.find(b"PK\x01\x02")
    while at >= 0:
        n = struct.unpack_from("<H", data, at + 28)[0]
        full = data[at + 46:at + 46 + n].decode()
        found[full.split("/", 1)[1]] = (at, full)
        at = data.find(b"PK\x01\x02", at + 46 + n)
    return found


def record_points_at(path: Path, state: dict, record: str, other: str) -> Path:
    """``state`` saved, then the central directory's entry of ``record`` pointed at the local header of
    ``other``: two entries over one stored record (torch's memory-mapped load maps both onto it)."""
    torch.save(state, path)
    data = bytearray(path.read_bytes())
    entries = central_entries(bytes(data))
    offset = struct.unpack_from("<I", data, entries[other][0] + 42)[0]
    struct.pack_into("<I", data, entries[record][0] + 42, offset)
    path.write_bytes(bytes(data))
    return path


def local_name_differs(path: Path, state: dict, record: str, name: str) -> Path:
    """``state`` saved, then the local header of ``record`` renamed ``name`` (as long) while the central
    directory keeps the record's own name."""
    torch.save(state, path)
    data = bytearray(path.read_bytes())
    at, full_name = central_entries(bytes(data))[record]
    full, new = full_name.encode(), full_name[:-len(record)].encode() + name.encode()
    assert len(full) == len(new)
    header = struct.unpack_from("<I", data, at + 42)[0]
    assert data[header + 30:header + 30 + len(full)] == full
    data[header + 30:header + 30 + len(full)] = new
    path.write_bytes(bytes(data))
    return path


def dcp_folder_with_blob(folder: Path, blob: bytes) -> Path:
    """A DCP folder whose one data file is ``blob``: the only chunk of float32 tensor 'b' of shape [4]
    (a DCP chunk saved as a ``torch.save`` blob)."""
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (ChunkStorageMetadata, Metadata, MetadataIndex, TensorProperties,
                                                       TensorStorageMetadata)

    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes(blob)
    chunk = ChunkStorageMetadata(offsets=torch.Size([0]), sizes=torch.Size([4]))
    meta = Metadata(state_dict_metadata={"b": TensorStorageMetadata(TensorProperties(dtype=torch.float32),
                                                                     torch.Size([4]), [chunk])},
                    planner_data={"b": ("b",)}, version="1.0.0",
                    storage_data={MetadataIndex("b", [0], 0): _StorageInfo("__0_0.distcp", 0, len(blob))})
    (folder / ".metadata").write_bytes(pickle.dumps(meta))
    return folder
