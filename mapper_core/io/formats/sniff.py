"""What a file really is, from its first bytes: so a file with the wrong name is named for what it holds.

A torch checkpoint renamed ``model.safetensors`` used to fail as "header too large"; a GGUF file
given as safetensors, as a header length of 14 GB. :func:`what_is` recognises the formats people
mix up (torch zip and legacy pickles, TorchScript, GGUF, ONNX, NumPy, HDF5, plain pickles and
zips) from a few bytes and the zip directory, reading no tensor data and running nothing.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

_LEGACY_TORCH = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # pickled torch magic number
# ONNX ModelProto: field 1 (ir_version, a small varint), then a string or message field
_ONNX_NEXT_FIELDS = {0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x4A, 0x52, 0x5A, 0x62, 0x6A, 0x72, 0x7A}


_DAMAGED_ZIP = "a truncated or damaged zip archive"


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError, EOFError):  # e.g. an undecodable name
        return _DAMAGED_ZIP
    if any(n.endswith("constants.pkl") for n in names):
        return "a TorchScript archive (torch.jit.save)"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "a torch zip checkpoint (torch.save)"
    if names and all(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive"
    return "a zip archive"


def what_is(path: Path) -> str | None:
    """A short description of the file's real format (``"a GGUF file"``), or None when not recognised."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head[:1] == b"\x80" and head[2:14] == _LEGACY_TORCH:
        return "a legacy torch checkpoint (torch.save with _use_new_zipfile_serialization=False)"
    if head.startswith(b"GGUF"):
        return "a GGUF file (llama.cpp)"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (e.g. Keras .h5)"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle"
    if len(head) >= 3 and head[0] == 0x08 and head[1] < 0x20 and head[2] in _ONNX_NEXT_FIELDS:
        return "an ONNX model (protobuf)"
    return None


def advice(kind: str, path: Path) -> str:
    """What to do with a file of ``kind`` (from :func:`what_is`) at ``path``."""
    if kind.startswith(("a torch", "a legacy torch")):
        if path.name.lower().endswith(".safetensors"):
            return "rename it to .pt (torch.load reads any file named *.safetensors as safetensors) and run again"
        return "read it as a torch checkpoint: pass --format torch, or leave --format out"
    if kind == _DAMAGED_ZIP:
        return ("it starts like a zip (a torch checkpoint is one) but its zip directory, at the end of the file, is "
                "missing or unreadable: an interrupted download or copy cuts it off; fetch or copy the file again")
    if kind.startswith("a TorchScript"):
        return "load it with torch.jit.load and torch.save(module.state_dict(), PATH) first"
    return ("mapper-core reads it only through a format plugin that knows it (`mapper plugins` lists the "
            "formats); otherwise convert it to safetensors or a torch checkpoint with its own tools first")
