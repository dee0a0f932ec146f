"""Sharded output written by several workers, resumably: shards bin-packed by bytes, each shard
written atomically and recorded in a manifest, the index written last.

One function writes one shard (:func:`write_shard`): temporary file, the same
:class:`~mapper_core.io.formats.writer.FileWriter` a single-process conversion uses (so the bytes
are the same), optional verification, SHA-256 of what is on disk, rename, then a line in the
manifest. ``--workers N`` runs it in N forked processes (:func:`run_workers`); the torchrun entry
point (:mod:`mapper_core.dist`) runs it in each rank. The metadata must be final before any shard
is written (the source hash is computed first), so every worker writes finished files.

The manifest (``INDEX.mapper-manifest``, JSON lines beside the index) names each finished
shard, its size and SHA-256. A rerun after a crash or a killed worker skips a shard whose file
is still there with the expected header, size and SHA-256, and writes the rest; the index is
written once every shard is there, and the manifest is then removed.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Callable, Sequence

from ..errors import BadInputError, MapperError
from .atomic import AtomicFiles, write_all
from .cost import assign_shards
from .formats.writer import Entry, FileWriter, RangeCopier

MANIFEST_SUFFIX = ".mapper-manifest"
_BUF = 1 << 20


def manifest_path(index: Path) -> Path:
    return index.with_name(index.name + MANIFEST_SUFFIX)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(_BUF)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                return h.hexdigest()
            h.update(view[:n])


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

    def finished(self, path: Path, expected: FileWriter, records: dict[str, dict]) -> bool:
        """Whether ``path`` is a shard a previous run finished: recorded, same header, size and SHA-256."""
        rec = records.get(path.name)
        if rec is None or rec.get("header") != hashlib.sha256(expected.header).hexdigest():
            return False
        try:
            if path.stat().st_size != expected.size or rec.get("bytes") != expected.size:
                return False
            with open(path, "rb") as fh:
                if fh.read(len(expected.header)) != expected.header:
                    return False
        except OSError:
            return False
        return file_sha256(path) == rec.get("sha256")

    def record(self, path: Path, writer: FileWriter, sha256: str) -> None:
        line = json.dumps({"shard": path.name, "bytes": writer.size, "sha256": sha256,
                           "header": hashlib.sha256(writer.header).hexdigest()}, separators=(",", ":")) + "\n"
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


def write_shard(path: Path, group: Sequence[Entry], meta: dict[str, str], manifest: Manifest,
                step: Callable[[int, str], None] | None = None, verify: bool = False,
                originals: dict[str, Entry] | None = None) -> int:
    """Write one shard atomically, then record it; returns how many tensors were verified."""
    checked = 0
    with AtomicFiles() as out:
        writer = FileWriter(out.create(path), group, meta, RangeCopier())
        writer.write(step)
        temp = out.temp_of(path)
        if verify:
            from .verify import verify_file

            checked = verify_file(temp, [(originals or {}).get(e.key, e) for e in writer.entries], shown_as=path)
        digest = file_sha256(temp)  # what is on disk, read back: the manifest vouches for it
        out.commit()
    manifest.record(path, writer, digest)
    return checked


def run_workers(assignment: Sequence[Sequence[int]], work: Callable[[int, Callable[[int, str], None]], int],
                progress: Callable[[int], None] | None = None) -> int:
    """Run ``work(shard index, step)`` for each worker's shards in forked processes; returns the
    tensors verified. A worker's error is raised here with its message (finished shards stay
    recorded, so a rerun resumes); a worker that dies is named with its signal."""
    ctx = multiprocessing.get_context("fork")  # children inherit the open reader and the entries
    done = ctx.Value("q", 0)
    checked = ctx.Value("q", 0)
    errors = ctx.SimpleQueue()

    def child(w: int, shards: Sequence[int]) -> None:
        _one_thread()

        def step(n: int, key: str) -> None:
            with done.get_lock():
                done.value += n
        try:
            for i in shards:
                count = work(i, step)
                with checked.get_lock():
                    checked.value += count
        except BaseException as exc:
            code = exc.exit_code if isinstance(exc, MapperError) else 2
            errors.put((w, type(exc).__name__, str(exc) or type(exc).__name__, code))
            os._exit(code)

    procs = [ctx.Process(target=child, args=(w, s), name=f"mapper-worker-{w}") for w, s in enumerate(assignment) if s]
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(0.2)
            if progress:
                progress(done.value)
    except BaseException:  # Ctrl-C or SIGTERM in the parent: the workers clean up their temporaries too
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join()
        raise
    if progress:
        progress(done.value)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    if reported:
        w, kind, message, code = sorted(reported)[0]
        err = BadInputError(f"worker {w}: {message}")
        err.exit_code = code
        raise err
    dead = [p for p in procs if p.exitcode != 0]
    if dead:
        p = dead[0]
        how = f"was killed by signal {-p.exitcode}" if p.exitcode < 0 else f"exited with {p.exitcode}"
        raise BadInputError(f"{p.name} {how}; the shards finished so far are kept in the manifest: rerun the "
                            "same command to write only the rest")
    return checked.value


def _one_thread() -> None:
    """In a forked worker: torch's thread pool (if torch is loaded) runs on one thread; the
    workers themselves are the parallelism, and OpenMP pools do not survive a fork."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


class ForkWorkers:
    """``--workers N`` on one machine: forked processes. :mod:`mapper_core.dist` has the same
    methods for torch.distributed ranks (``leader``: the one that checks and writes the index)."""

    leader = True

    def __init__(self, workers: int):
        self.workers = workers

    def hash(self, sources: Sequence[Path], waiting: Callable[[int, int], None] | None) -> dict[Path, str]:
        from .provenance import Hasher

        hasher = Hasher(list(sources))
        hasher.start()
        return hasher.result(waiting)  # finished before the workers are forked: a fork must not copy a thread

    def agree(self, value: object) -> object:
        """The leader's value, on every worker."""
        return value

    def run(self, assignment: Sequence[Sequence[int]], work: Callable[[int, Callable[[int, str], None]], int],
            progress: Callable[[int], None] | None) -> int:
        return run_workers(assignment, work, progress)

    def barrier(self) -> None:
        pass


def write_parallel(files: Sequence[Path], groups: Sequence[Sequence[Entry]], index: Path, meta: dict[str, str],
                   sources: Sequence[Path], force: bool, executor: ForkWorkers, verify: bool,
                   originals: dict[str, Entry], progress: Callable[[int], None] | None) -> int:
    """Every shard not already finished, shared out by ``executor``; then the index, last (by the
    leader). Returns the tensors verified."""
    from .formats.shards import index_json

    writers = [FileWriter(-1, g, meta) for g in groups]  # headers and sizes only: nothing is written
    manifest = Manifest(index)
    todo, problem, refused = None, None, None
    if executor.leader:  # one view of what is finished, so every worker skips the same shards
        try:
            todo = _todo(files, writers, index, manifest, sources, force)
        except MapperError as exc:
            problem, refused = (str(exc), exc.exit_code), exc
    todo, problem = executor.agree((todo, problem))
    if refused is not None:
        raise refused
    if problem is not None:  # the leader's refusal, on the other ranks
        err = BadInputError(problem[0])
        err.exit_code = problem[1]
        raise err
    sizes = [writers[i].size for i in todo]
    assignment = [[todo[j] for j in share] for share in assign_shards(sizes, executor.workers)]

    def work(i: int, step: Callable[[int, str], None]) -> int:
        return write_shard(files[i], groups[i], meta, manifest, step, verify, originals)

    checked = executor.run(assignment, work, progress)
    if executor.leader:
        weight_map = {e.key: path.name for path, w in zip(files, writers) for e in w.entries}
        total = sum(e.spec.nbytes for g in groups for e in g)
        with AtomicFiles() as out:
            write_all(out.create(index), index_json(weight_map, total, meta))
            out.commit()
        manifest.remove()
    executor.barrier()  # nobody returns before the index is there
    return checked


def _todo(files: Sequence[Path], writers: Sequence[FileWriter], index: Path, manifest: Manifest,
          sources: Sequence[Path], force: bool) -> list[int]:
    """The shards still to write; refuses destinations as a single-process conversion would."""
    from .atomic import check_destinations

    records = manifest.records()
    finished = {i for i, (path, w) in enumerate(zip(files, writers)) if manifest.finished(path, w, records)}
    todo = [i for i in range(len(files)) if i not in finished]
    # a shard the manifest names is ours (finished, or damaged since): replaced without --force, never the source
    ours = {i for i in range(len(files)) if files[i].name in records}
    check_destinations([files[i] for i in ours | finished], sources, force=True)
    check_destinations([files[i] for i in todo if i not in ours] + [index], sources, force)
    return todo
