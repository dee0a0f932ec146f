"""The resume manifest of a sharded output: which shards a run finished, as JSON lines beside the index.

A shard is renamed into place only once it is complete and on disk (fsync), and only then is its
line appended, so a shard the manifest names was finished. A rerun trusts it when the file is still
the one that was renamed: the same header, size, inode and modification time (what ``stat`` says,
no pass over the data: re-reading every finished shard cost as much as writing it). A file put
there or modified since has another inode or time and is written again. What a byte-level check
would add (a file edited in place with its time set back, a disk flipping a bit) is out of scope:
``--verify`` checks the shards a run writes, against the source.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST_SUFFIX = ".mapper-manifest"


def manifest_path(index: Path) -> Path:
    return index.with_name(index.name + MANIFEST_SUFFIX)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_ino, st.st_mtime_ns]


class Manifest:
    """The finished shards of one output, as JSON lines appended by every worker."""

    def __init__(self, index: Path):
        self.path = manifest_path(index)

    def records(self) -> dict[str, dict]:
        """shard name → its latest record; lines that do not parse (a torn last line) are ignored."""
        found: dict[str, dict] = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return found
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("shard"), str):
                found[rec["shard"]] = rec
        return found

    def finished(self, path: Path, layout: bytes, size: int, records: dict[str, dict]) -> bool:
        """Whether ``path`` is the shard a previous run finished: recorded with this ``layout`` (the
        header before the source digests are filled in: the same tensors, names and offsets), and still
        the same file (size, inode, modification time) starting with the header it was given."""
        rec = records.get(path.name)
        if rec is None or rec.get("layout") != _sha256(layout) or rec.get("bytes") != size:
            return False
        try:
            if _identity(path) != rec.get("file"):
                return False
            with open(path, "rb") as fh:
                return _sha256(fh.read(len(layout))) == rec.get("header")
        except OSError:
            return False

    def record(self, path: Path, layout: bytes, header: bytes, size: int) -> None:
        """Append ``path`` (renamed into place, complete and synced; ``header`` is its final header) as finished."""
        line = json.dumps({"shard": path.name, "bytes": size, "layout": _sha256(layout), "header": _sha256(header),
                           "file": _identity(path)}, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, line.encode("utf-8"))  # one short append: workers' lines do not interleave
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
