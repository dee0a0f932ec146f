"""The resume manifest of a sharded output: which shards a run finished, as JSON lines beside the index.

A shard is renamed into place only once it is complete and on disk (fsync), and only then is its
line appended, so a shard the manifest names was finished. A rerun trusts it when the file is still
the one that was renamed: the same header, size, inode and modification time (what ``stat`` says,
no pass over the data: re-reading every finished shard cost as much as writing it). A file put
there or modified since has another inode or time and is written again. What a byte-level check
would add (a file edited in place with its time set back, a disk flipping a bit) is out of scope:
``--verify`` checks the shards a run writes, against the source.

Each shard's line also names the source it was made from: the size, inode and modification time of
every source file (read with ``stat`` when the run starts, and written once per process as a
``sources`` line that the shard lines refer to by its SHA-256). With the source hash, the digests in
a finished shard's header say whether the rerun reads the same source; without it
(``--no-source-hash``), this record is what says so (:meth:`Manifest.source_changes`).

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
from typing import Sequence

MANIFEST_SUFFIX = ".mapper-manifest"


def manifest_path(index: Path) -> Path:
    return index.with_name(index.name + MANIFEST_SUFFIX)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_ino, st.st_mtime_ns]


def source_identity(sources: Sequence[Path]) -> list[list]:
    """``[path, size, inode, modification time]`` of each source file: what tells, without reading it,
    that a source file is still the one an earlier run read."""
    return [[str(p), *_identity(p)] for p in sources]


def _digest(identity: list[list]) -> str:
    """The identity's SHA-256, paths left out: the same files named from another folder are the same source."""
    return _sha256(json.dumps([row[1:] for row in identity]).encode("utf-8"))


class Manifest:
    """The finished shards of one output, as JSON lines appended by every worker."""

    def __init__(self, index: Path):
        self.path = manifest_path(index)
        self.source: list[list] = []  # this run's source_identity(), recorded with every shard it finishes
        self._source_recorded = -1  # the process that has written this run's ``sources`` line (a fork has not)

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
        """Append ``path`` (renamed into place, complete and synced; ``header`` is its final header) as finished,
        made from the source :attr:`source` names."""
        source = _digest(self.source)
        lines = [{"shard": path.name, "bytes": size, "layout": _sha256(layout), "header": _sha256(header),
                  "file": _identity(path), "source": source}]
        if self._source_recorded != os.getpid():
            lines.insert(0, {"sources": source, "files": self.source})
        self._append(*lines)
        self._source_recorded = os.getpid()

    def source_changes(self, record: dict) -> str | None:
        """What differs between the source a finished shard's ``record`` was made from and :attr:`source`
        (this run's), said for the user; None when nothing does."""
        if record.get("source") == _digest(self.source):
            return None
        then = self.records("sources").get(record.get("source"), {}).get("files")
        if not isinstance(then, list):
            return "that run recorded no source files to compare with"
        if len(then) != len(self.source):
            return f"that run read {len(then)} source files, this one {len(self.source)}"
        for old, new in zip(then, self.source):
            name = new[0]
            if not isinstance(old, list) or len(old) != 4:
                return "that run's record of the source is unreadable"
            if old[2] != new[2]:
                return f"{name}: replaced by another file since that run read it"
            if old[1] != new[1]:
                return f"{name}: {old[1]:,} bytes then, {new[1]:,} now"
            if old[3] != new[3]:
                return f"{name}: modified since that run read it"
        return "that run's record of the source differs"

    def _append(self, *records: dict) -> None:
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, data)  # one append: workers' lines do not interleave
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
