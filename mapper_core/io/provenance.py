"""What a converted file records about where it came from: the ``mapper.*`` metadata and the source hash.

The source files are hashed (SHA-256) on a background thread while the bytes are copied;
the header is written first with a same-length placeholder and rewritten at the end.
Non-tensor values of the source that JSON can hold (``'step': 5``, a config) ride along as
``mapper.extra``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..errors import CheckpointError
from .formats.aliases import ALIASES_KEY, encode_aliases
from .convert_result import ConvertResult
from .formats.base import Reader, non_tensors
from ..plan.plan import Plan

PLACEHOLDER = "0" * 64  # a SHA-256 hex digest's length, so the final header fits the reserved one
EXTRA_KEY = "mapper.extra"


def extra_values(reader: Reader) -> dict[str, Any]:
    """The source's non-tensor values JSON can hold ({} for readers that have none)."""
    values = getattr(reader, "extra_values", None)
    return dict(values()) if values else {}


def non_tensors_left(result: ConvertResult, reader: Reader, dcp: bool) -> ConvertResult:
    """``result`` naming the source's non-tensor items the output holds nowhere: not carried over into
    a DCP folder, and (safetensors output) not in ``mapper.extra``, which JSON-able values ride in."""
    extra = {} if dcp else extra_values(reader)
    carried = set(result.non_tensors_carried)
    left = tuple(k for k in non_tensors(reader) if k not in extra and k not in carried)
    return dataclasses.replace(result, non_tensors_left_behind=left) if left else result


def source_files(reader: Reader, src: Path) -> list[Path]:
    """The files the source is made of: the file itself, or an index and its shards.

    A reader that can tell its data files are not all there (``require_data()``: a DCP folder missing
    one) raises its own error here, before anything is hashed or written."""
    require = getattr(reader, "require_data", None)
    if require is not None:
        require()
    base = Path(getattr(reader, "path", src))
    shards = getattr(reader, "shards", ())
    return [base] + [base.parent / name for name in shards]


def metadata(reader: Reader, src: Path, plan: Plan | None, rules_sha256: str | None,
              aliases: dict[str, str], hashed: list[Path]) -> dict[str, str]:
    # the source's own metadata rides along, except what we set or what only fits the source
    meta = {k: v for k, v in reader.metadata().items()
            if not k.startswith("mapper.") and k != "total_size" and isinstance(v, str)}
    meta.setdefault("format", "pt")  # what transformers expects; a source's own ("np") is kept
    meta["mapper.version"] = __version__
    meta["mapper.source"] = src.name
    if hashed:
        meta["mapper.source_sha256"] = PLACEHOLDER
        if len(hashed) > 1:
            meta["mapper.source_shards_sha256"] = json.dumps({p.name: PLACEHOLDER for p in hashed[1:]},
                                                             separators=(",", ":"))
    if plan is not None:
        meta["mapper.rules"] = plan.rules_name
        if rules_sha256:
            meta["mapper.rules_sha256"] = rules_sha256
    if aliases:
        meta[ALIASES_KEY] = encode_aliases(aliases)
    extra = extra_values(reader)
    if extra:
        meta[EXTRA_KEY] = json.dumps(extra, separators=(",", ":"), sort_keys=True)
    return meta


def final_metadata(meta: dict[str, str], digests: dict[Path, str], hashed: list[Path]) -> dict[str, str]:
    meta = dict(meta)
    meta["mapper.source_sha256"] = digests[hashed[0]]
    if len(hashed) > 1:
        meta["mapper.source_shards_sha256"] = json.dumps({p.name: digests[p] for p in hashed[1:]},
                                                         separators=(",", ":"))
    return meta


class Hasher(threading.Thread):
    """SHA-256 of the source files on a background thread (hashlib and file reads release the GIL),
    so hashing overlaps the copy instead of adding a second pass."""

    def __init__(self, paths: list[Path]):
        super().__init__(name="mapper-source-hash", daemon=True)
        self.paths = paths
        self._stop_flag = threading.Event()
        self._digests: dict[Path, str] = {}
        self._error: BaseException | None = None
        self.done = 0  # bytes hashed so far (read by the caller's thread for progress)
        try:
            self.total = sum(p.stat().st_size for p in paths)
        except OSError as exc:  # gone since the reader opened it
            raise CheckpointError(f"{exc.filename}: cannot hash the source: {exc.strerror or exc}") from None

    def run(self) -> None:
        buf = bytearray(1024 * 1024)
        view = memoryview(buf)
        try:
            for path in self.paths:
                h = hashlib.sha256()
                with open(path, "rb", buffering=0) as fh:
                    while not self._stop_flag.is_set():
                        n = fh.readinto(buf)
                        if not n:
                            break
                        h.update(view[:n])
                        self.done += n
                self._digests[path] = h.hexdigest()
        except BaseException as exc:  # reported by result(), in the caller's thread
            self._error = exc

    def result(self, waiting: Callable[[int, int], None] | None = None) -> dict[Path, str]:
        """The digests, once every file is read; ``waiting(done, total)`` is called while it is not."""
        if waiting is not None:
            while self.is_alive():
                waiting(self.done, self.total)
                self.join(0.25)
        self.join()
        if self._error is not None:
            raise CheckpointError(f"cannot hash the source: {self._error}") from None
        return self._digests

    def cancel(self) -> None:
        self._stop_flag.set()
