"""What a file is from its first 16 bytes: the magic numbers of the formats people mix up.

Shared by the format sniffer (:mod:`mapper_core.io.formats.sniff`, which also looks inside zips)
and the rules loader (a checkpoint given where a rules file belongs). Bytes only: no file is
opened here and nothing is run.
"""
from __future__ import annotations

ZIP = "a zip archive"
_LEGACY_TORCH = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # pickled torch magic number
# ONNX ModelProto: field 1 (ir_version, a small varint), then a string or message field
_ONNX_NEXT_FIELDS = {0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x4A, 0x52, 0x5A, 0x62, 0x6A, 0x72, 0x7A}


def kind_of_head(head: bytes) -> str | None:
    """A short description of the format a file starting with ``head`` is in (:data:`ZIP` for a zip
    whose first member's name, when ``head`` reaches it, is not torch's or NumPy's), or None when no
    known magic number matches."""
    if head.startswith(b"PK\x03\x04"):
        return _zip_by_first_member(head)
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


def _zip_by_first_member(head: bytes) -> str:
    """A zip's kind from the name in its first local file header (offset 30, length at 26), when the
    bytes reach it: torch.save writes ``<name>/data.pkl`` first, numpy.savez ``<array>.npy``."""
    if len(head) < 30:
        return ZIP
    length = int.from_bytes(head[26:28], "little")
    name = head[30:30 + length]
    if len(name) < length:
        return ZIP
    if name.endswith(b"data.pkl"):
        return "a torch zip checkpoint (torch.save)"
    if name.endswith(b".npy"):
        return "a NumPy .npz archive"
    return ZIP
