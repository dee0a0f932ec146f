"""A torch checkpoint checked before torch reads it: its zip records, its pickle's requests, its budget.

``torch.load(mmap=True)`` trusts the archive: it maps each storage at its record's offset
whatever the record's compression or length, so a deflated record reads as its compressed
bytes and a short one runs into the next zip header. And ``weights_only`` still lets a
pickle of a few hundred bytes allocate gigabytes. :func:`check_archive` reads the zip's
directory and its pickle (with inert stand-ins for every global, :mod:`.pickle_scan`) first
and decides:

- every storage the pickle names must have its record, exactly as long as the storage
  (``torch.load`` without mmap refuses any other length too);
- a compressed record (``torch.save`` never writes one) is read decompressed: the file is
  then loaded without mmap, as ``torch.load`` does by default;
- what the file would grow into (decompressed records, memory the pickle asks for, and,
  once loaded, views larger than their storage) is charged to an :class:`ExpansionBudget`;
- the objects the pickle builds are bounded before anything unpickles it: at most
  :func:`step_limit` opcodes (one object each at most) and no memo index no pickler writes.

No torch here.
"""
from __future__ import annotations

import bisect
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from ...errors import CheckpointError, ExpansionError
from ...text import listed
from .pickle_scan import PickleFacts, ScanError, scan
from .pickle_steps import SharingError, StepBudgetError, count_steps

EXPANSION_FLOOR = 256 * 2**20  # bytes a file of any size may grow by
EXPANSION_RATIO = 4  # ... or this many times its own size, whichever is larger
PICKLE_LIMIT = 16 * 2**20  # a compressed data.pkl may decompress to at most this
# Opcodes a pickle may run: each can build an object of ~100 bytes from one byte of pickle (an
# empty list, deflated 1,000 to 1). torch.save writes about 30 per tensor and ~10 bytes of file
# per opcode (tensors of one element), ~5 in the legacy format. Each opcode allowed costs ~200 bytes
# of peak memory (torch's unpickler), so a file under 1 MB peaks ~60 MB above importing torch.
STEP_FLOOR = 1 << 17
STEP_RATIO = 4  # ... or one opcode per this many bytes of the file, whichever is larger
_METHODS = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... name length, extra length (30 bytes)
ALLOW_HINT = "pass --allow-expansion (Python: allow_expansion=True)"
_RESAVE = "Re-save the state dict with torch.save from wherever the file came from"
_DAMAGED = f"the zip archive is damaged, and what its tensors hold would depend on the reader: refused. {_RESAVE}"


def expansion_limit(file_size: int) -> int:
    """How many bytes a checkpoint of ``file_size`` bytes may grow by before it is refused."""
    return max(EXPANSION_FLOOR, EXPANSION_RATIO * file_size)


def step_limit(file_size: int) -> int:
    """How many opcodes the pickle(s) of a checkpoint of ``file_size`` bytes may run."""
    return max(STEP_FLOOR, file_size // STEP_RATIO)


def _count_steps(budget: ExpansionBudget, what: str, stream: IO[bytes], pickles: int = 1) -> None:
    """Refuse a pickle that would build more than the budget allows (no opcode limit with
    ``allow_expansion``), or whose shared objects would cost unbounded work (whatever the budget)."""
    limit = step_limit(budget.file_size)
    try:
        count_steps(stream, limit if budget.limit is not None else None, pickles, size_limit=limit)
    except SharingError as exc:
        raise CheckpointError(
            f"{budget.path}: refused: {what} {exc}. torch.save never writes this (without sharing, an object has "
            f"at most as many parts as the pickle has opcodes; the limit is {limit:,}, the larger of {STEP_FLOOR:,} "
            f"and one per {STEP_RATIO} bytes of the file): the file is damaged or made to hang what reads it") from None
    except StepBudgetError as exc:
        raise ExpansionError(
            f"{budget.path}: refused: {what} {exc}; each can build an object in memory, and this "
            f"{budget.file_size:,}-byte file may run {limit:,} (the larger of {STEP_FLOOR:,} and one per "
            f"{STEP_RATIO} bytes of the file; torch.save writes about 30 per tensor), which guards against memory "
            f"bombs. If you trust the file and have the memory, {ALLOW_HINT}") from None


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


@dataclass
class ExpansionBudget:
    """Bytes a checkpoint makes that are not in the file; refused past ``limit`` (None: no limit)."""

    path: Path
    file_size: int
    limit: int | None
    spent: list[tuple[str, int]] = field(default_factory=list)

    def spend(self, what: str, nbytes: int) -> None:
        self.spent.append((what, nbytes))
        total = sum(n for _, n in self.spent)
        if self.limit is not None and total > self.limit:
            worst = max(self.spent, key=lambda s: s[1])[0]
            raise ExpansionError(
                f"{self.path}: refused: {worst} would grow this {self.file_size:,}-byte file by {_mib(total)}, "
                f"past the limit of {_mib(self.limit)} (the larger of {_mib(EXPANSION_FLOOR)} and "
                f"{EXPANSION_RATIO}x the file's size) that guards against memory bombs. If you trust the file "
                f"and have the memory and disk, {ALLOW_HINT}"
            )


@dataclass(frozen=True)
class RecordRange:
    """Bytes ``start:end`` of one record of a zip archive, found from the zip's own directory (not from
    torch's mapping): a stored record is read at its data offset, a compressed one through the zip
    reader, decompressed."""

    path: Path
    record: str
    start: int
    end: int
    data_start: int = 0  # where the record's data begins in the file (from its local header)
    stored: bool = True

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    def pieces(self, size: int, into: bytearray | None = None) -> Iterator[bytes | memoryview]:
        """The bytes in pieces of at most ``size``; fewer bytes in all if the record is shorter. With
        ``into`` (at least ``size`` long), a stored record is read into it and the pieces are views of it."""
        if self.stored and into is not None and hasattr(os, "preadv"):
            yield from self._read_into(memoryview(into)[:size])
            return
        if not self.stored:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.record) as fh:
                fh.seek(self.start)
                yield from _chunks(fh.read, self.nbytes, size)
            return
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            at = self.data_start + self.start

            def read(n: int) -> bytes:
                nonlocal at
                data = os.pread(fd, n, at)
                at += len(data)
                return data
            yield from _chunks(read, self.nbytes, size)
        finally:
            os.close(fd)

    def _read_into(self, view: memoryview) -> Iterator[memoryview]:
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            done = 0
            while done < self.nbytes:
                n = os.preadv(fd, [view[:min(len(view), self.nbytes - done)]], self.data_start + self.start + done)
                if n <= 0:
                    return
                done += n
                yield view[:n]
        finally:
            os.close(fd)


def _chunks(read: Callable[[int], bytes], nbytes: int, size: int) -> Iterator[bytes]:
    left = nbytes
    while left > 0:
        piece = read(min(size, left))
        if not piece:
            return
        left -= len(piece)
        yield piece


@dataclass
class Archive:
    """What :func:`check_archive` learned about a torch file."""

    path: Path
    is_zip: bool
    byteorder: str = "little"
    in_memory: bool = False  # load without mmap: some record is compressed, or the file is legacy
    records: list[tuple[int, int, str, bool]] = field(default_factory=list)  # (data start, size, name, stored), sorted
    facts: PickleFacts = field(default_factory=PickleFacts)

    def record_range(self, start: int, end: int) -> RecordRange | None:
        """The stored record whose data holds file bytes ``start:end``, as a range of that record."""
        i = bisect.bisect_right(self.records, (start, float("inf"))) - 1
        if i >= 0:
            begin, size, name, stored = self.records[i]
            if begin <= start and end <= begin + size:
                return RecordRange(self.path, name, start - begin, end - begin, begin, stored)
        return None


# Bytes per element of the storage classes torch.save names (torch.storage.UntypedStorage counts
# bytes; newer dtypes are saved through it). Read from the class name, not from torch: asking a
# legacy storage class for its dtype warns that TypedStorage is deprecated.
_ELEMENT_SIZES = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
                  "Byte": 1, "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "QUInt8": 1, "QInt8": 1,
                  "QInt32": 4, "QUInt4x2": 1, "QUInt2x4": 1}


def element_size(storage_class: str) -> int | None:
    """Bytes per element of a storage class a pickle names (``torch.FloatStorage``); None if unknown."""
    if storage_class == "torch.storage.UntypedStorage":
        return 1
    module, _, attr = storage_class.rpartition(".")
    if module in ("torch", "torch.cuda") and attr.endswith("Storage"):
        return _ELEMENT_SIZES.get(attr[:-len("Storage")])
    return None


def check_archive(path: Path, budget: ExpansionBudget, lenient: bool = False,
                  opener: Callable[[], IO[bytes]] | None = None) -> Archive:
    """Check a torch zip or legacy file before torch reads it; raises a typed error naming the problem.

    ``lenient`` (under trust_pickle) lets a pickle the static scan cannot follow through,
    for torch to judge. ``opener`` reads the file from elsewhere than ``path`` (a ``torch.save``
    blob inside a DCP data file: a seekable window of it); ``path`` then only names it in messages.
    """
    reopen = opener or (lambda: open(path, "rb"))
    with reopen() as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"
    archive = Archive(path, is_zip, in_memory=not is_zip)
    try:
        if is_zip:
            _check_zip(archive, budget, reopen)
        else:
            with reopen() as fh:
                _count_steps(budget, "its pickle", fh, 5)
                fh.seek(0)
                for _ in range(4):  # magic number, protocol version, system info, then the object
                    scan(fh, archive.facts)
                need = sum(r.numel * (element_size(r.storage_class) or 0) for r in archive.facts.storages.values())
                if need > budget.file_size:
                    raise CheckpointError(f"{path}: its pickle declares storages of {need:,} bytes but the file "
                                          f"holds {budget.file_size:,}; the file is truncated or damaged")
                _check_legacy_storages(archive, fh, budget.file_size)
    except ScanError as exc:
        if not lenient:
            raise CheckpointError(f"{path}: not a readable torch checkpoint (damaged pickle?): {exc}") from None
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:  # records past the end...
        raise CheckpointError(f"{path}: damaged zip archive ({exc}); the file is truncated or not a torch "
                              "checkpoint") from None
    for what, nbytes in archive.facts.allocations:
        budget.spend(f"the pickle's request {what}({nbytes:,} bytes)", nbytes)
    return archive


class _Keys(pickle.Unpickler):
    """The legacy format's fifth pickle, a list of storage keys: plain data, no global, no persistent id."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a global ({module}.{name}) where storage keys belong")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("a persistent id where storage keys belong")


def _check_legacy_storages(archive: Archive, fh: IO[bytes], file_size: int) -> None:
    """Each storage of a legacy file, as torch reads it after the pickles: the list of keys, then per key
    its element count (8 bytes) and its bytes. A count that is not the pickle's is refused naming the
    storage (torch said "storage has wrong byte size: expected %ld got %ld..."). A file that ends early
    or does not parse is left to torch.load, which says so."""
    try:
        keys = _Keys(fh).load()
    except Exception:  # noqa: BLE001 - not the format this checks: torch.load judges the file
        return
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return
    at = fh.tell()
    for key in keys:
        ref = archive.facts.storages.get(key)
        size = element_size(ref.storage_class) if ref is not None else None
        fh.seek(at)
        head = fh.read(8)
        if ref is None or size is None or len(head) < 8:
            return
        count = int.from_bytes(head, "little", signed=True)
        if count != ref.numel and int.from_bytes(head, "big", signed=True) == ref.numel:  # saved big-endian
            count = ref.numel
        if count != ref.numel:
            raise CheckpointError(
                f"{archive.path}: storage '{key}' says it holds {count:,} elements, but the pickle builds a storage "
                f"of {ref.numel:,} x {size} = {ref.numel * size:,} bytes ({ref.storage_class}) on it; the file is "
                "truncated or damaged (torch.load refuses it too). Re-save it with torch.save"
            )
        at += 8 + count * size
        if at > file_size:
            raise CheckpointError(f"{archive.path}: storage '{key}' ({count * size:,} bytes) runs past the end of the "
                                  f"{file_size:,}-byte file; the file is truncated")


def _check_zip(archive: Archive, budget: ExpansionBudget, reopen: Callable[[], IO[bytes]]) -> None:
    path = archive.path
    with reopen() as raw, zipfile.ZipFile(raw) as zf:
        entries = zf.infolist()
        infos = {i.filename: i for i in entries}
        if len(infos) != len(entries):
            _refuse_twice_named(path, [i.filename for i in entries])
        pickle_name = next((n for n in infos if n == "data.pkl" or n.endswith("/data.pkl")), None)
        if pickle_name is None:
            raise CheckpointError(f"{path}: a zip archive without data.pkl: not a torch.save checkpoint")
        prefix = pickle_name[:-len("data.pkl")]
        for info in infos.values():
            if info.compress_type == zipfile.ZIP_STORED:
                continue
            method = _METHODS.get(info.compress_type, f"method {info.compress_type}")
            if info.filename == pickle_name and info.file_size > PICKLE_LIMIT and budget.limit is not None:
                raise ExpansionError(f"{path}: refused: its pickle '{pickle_name}' is compressed ({method}) and "
                                     f"decompresses to {_mib(info.file_size)}, past the {_mib(PICKLE_LIMIT)} "
                                     f"allowed for a compressed pickle. If you trust the file, {ALLOW_HINT}")
            budget.spend(f"record '{info.filename}' (compressed with {method})", info.file_size)
            archive.in_memory = True
        order = infos.get(prefix + "byteorder")
        if order is not None:
            text = zf.read(order) if order.file_size <= 16 else b"?"
            if text not in (b"little", b"big"):
                raise CheckpointError(f"{path}: record '{order.filename}' says byte order {text[:16]!r}; "
                                      "expected 'little' or 'big'")
            archive.byteorder = text.decode()
        with zf.open(pickle_name) as stream:  # streamed: a compressed pickle is never held whole here
            _count_steps(budget, f"its pickle '{pickle_name}'", stream)
        with zf.open(pickle_name) as stream:
            archive.facts = scan(stream)
        for ref in archive.facts.storages.values():
            name = f"{prefix}data/{ref.key}"
            info = infos.get(name)
            if info is None:
                raise CheckpointError(f"{path}: the pickle loads storage '{ref.key}', but the archive has no "
                                      f"record '{name}'; the file is damaged")
            size = element_size(ref.storage_class)
            if size is not None and info.file_size != ref.numel * size:
                raise CheckpointError(
                    f"{path}: record '{name}' holds {info.file_size:,} bytes, but the pickle builds a storage of "
                    f"{ref.numel:,} x {size} = {ref.numel * size:,} bytes ({ref.storage_class}) on it; the file is "
                    "truncated or damaged (torch.load refuses it too). Re-save it with torch.save"
                )
        with reopen() as fh:
            starts = _local_records(path, entries, fh)
        archive.records = sorted((starts[info.filename], info.file_size, info.filename,
                                  info.compress_type == zipfile.ZIP_STORED)
                                 for info in infos.values() if info.filename.startswith(prefix + "data/"))


def _local_records(path: Path, entries: list[zipfile.ZipInfo], fh: IO[bytes]) -> dict[str, int]:
    """Where each record's data starts, from its local header, once the records are known to be apart.

    The zip's directory says where each record's local header is; torch's memory-mapped load trusts it.
    Two entries over the same bytes (one local record named twice by offset) load as one storage, so
    two tensors torch.load keeps apart would look tied; a local header naming another record than the
    directory does, or none there at all, is a damaged archive. All are refused, naming the records."""
    spans, renamed, data_starts = [], [], {}
    for info in entries:
        fh.seek(info.header_offset)
        sig, n, m = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size).ljust(30, b"\0"))
        if sig != b"PK\x03\x04":
            raise CheckpointError(f"{path}: the zip directory puts record '{info.filename}' at byte "
                                  f"{info.header_offset:,}, where no record starts; {_DAMAGED}")
        local = fh.read(n).decode("utf-8" if info.flag_bits & 0x800 else "cp437", errors="replace")
        if local != info.orig_filename:
            renamed.append((info.filename, local[:200]))
        data_starts[info.filename] = info.header_offset + 30 + n + m
        spans.append((info.header_offset, data_starts[info.filename] + info.compress_size, info.filename))
    spans.sort()
    for (begin, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            where = (f"puts both at byte {start:,}" if start == begin else
                     f"puts '{second}' at byte {start:,}, inside '{first}' (bytes {begin:,} to {end:,})")
            raise CheckpointError(
                f"{path}: the zip archive's records '{first}' and '{second}' overlap (the zip directory {where}); "
                "readers disagree on what each holds (torch's memory-mapped load maps both onto the same bytes, as "
                "if they were one tensor; torch.load reads two copies; Python's zipfile, from 3.12, refuses them), "
                f"so the file is ambiguous and refused on purpose. {_RESAVE}")
    if renamed:
        named = listed([f"'{name}' (its local header says '{local}')" for name, local in renamed], 3)
        raise CheckpointError(f"{path}: the zip directory's name and the record's own header disagree for {named}; "
                              f"{_DAMAGED}")
    return data_starts


def _refuse_twice_named(path: Path, names: list[str]) -> None:
    """A zip directory naming one record twice: torch's memory-mapped load reads the first copy,
    Python's ``zipfile`` (and so this module's checks) the last; what a tensor holds would depend
    on who reads it."""
    seen: set[str] = set()
    twice = sorted({n for n in names if n in seen or seen.add(n)})
    names = listed([f"'{n}'" for n in twice], 5)
    raise CheckpointError(
        f"{path}: the zip archive holds two records named {names}; readers disagree on which copy counts "
        "(torch's memory-mapped load takes the first, Python's zipfile the last), so the file is ambiguous and "
        f"refused on purpose. {_RESAVE}")
