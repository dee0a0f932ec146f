"""The resume manifest of a sharded output: which shards a run finished, as JSON lines beside the index.

A shard is renamed into place only once it is complete and on disk (fsync), and only then is its
line appended, so a shard the manifest names was finished. A rerun trusts it when the file is still
the one that was renamed: the same header, size, inode and modification time (what ``stat`` says,
no pass over the data: re-reading every finished shard cost as much as writing it). A file put
there or modified since has another inode or time and is written again. What a byte-level check
would add (a file edited in place with its time set back, a disk flipping a bit) is out of scope:
``--verify`` checks the shards a run writes, against the source.

The index is recorded too, just before it is renamed into place (its SHA-256 and size), since the
manifest can only be removed after that rename: a run stopped between the two leaves a complete
output and its manifest, and the rerun knows that index as this output's own (:meth:`Manifest.owns_index`)
instead of refusing it as a file that already exists.
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

    def records(self, kind: str = "shard") -> dict[str, dict]:
        """shard (or, with ``kind="index"``, index) name → its latest record; lines that do not parse (a
        torn last line) are ignored."""
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
            if isinstance(rec, dict) and isinstance(rec.get(kind), str):
                found[rec[kind]] = rec
        return found

    def owns_index(self, index: Path) -> bool:
        """Whether ``index`` is the very file an earlier run of this output renamed into place (recorded
        with this SHA-256 and size) before it was stopped, short of removing the manifest."""
        rec = self.records("index").get(index.name)
        if rec is None:
            return False
        try:
            if index.is_symlink() or index.stat().st_size != rec.get("bytes"):
                return False
            return _sha256(index.read_bytes()) == rec.get("sha256")
        except OSError:
            return False

    def record_index(self, index: Path, data: bytes) -> None:
        """Append the index about to be renamed into place (``data``: its bytes)."""
        self._append({"index": index.name, "bytes": len(data), "sha256": _sha256(data)})

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
        self._append({"shard": path.name, "bytes": size, "layout": _sha256(layout), "header": _sha256(header),
                      "file": _identity(path)})

    def _append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
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
