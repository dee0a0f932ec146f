"""A pickle written opcode by opcode, so a test can ask for what ``torch.save`` never would. No torch."""
from __future__ import annotations

import struct


class Pickle:
    """A protocol-2 pickle written opcode by opcode (only what the builders here need)."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def op(self, code: bytes) -> "Pickle":
        self.out += code
        return self

    def glob(self, module: str, name: str) -> "Pickle":
        return self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def text(self, s: str) -> "Pickle":
        data = s.encode()
        return self.op(b"X" + struct.pack("<I", len(data)) + data)

    def int(self, n: int) -> "Pickle":
        data = n.to_bytes((n.bit_length() + 8) // 8 or 1, "little", signed=True)
        return self.op(b"\x8a" + bytes([len(data)]) + data)

    def ints(self, values: tuple[int, ...]) -> "Pickle":
        self.op(b"(")
        for v in values:
            self.int(v)
        return self.op(b"t")

    def tensor(self, storage_key: str, storage_class: str, storage_numel: int, offset: int,
               size: tuple[int, ...], stride: tuple[int, ...]) -> "Pickle":
        """``torch._utils._rebuild_tensor_v2`` of a storage record, as torch.save writes it."""
        self.glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
        self.op(b"(").text("storage").glob("torch", storage_class).text(storage_key).text("cpu")
        self.int(storage_numel).op(b"tQ")  # the persistent id tuple, then BINPERSID
        self.int(offset).ints(size).ints(stride).op(b"\x89")  # requires_grad False
        self.glob("collections", "OrderedDict").op(b")R")
        return self.op(b"tR")

    def bytes(self) -> bytes:
        return bytes(self.out + b".")
