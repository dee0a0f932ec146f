"""Sharded output written by several workers, resumably: shards bin-packed by bytes, each shard
written atomically and recorded in a manifest (:mod:`.shard_manifest`), the index written last.

A worker writes its shards one after the other (:func:`write_share`) with the same
:class:`~mapper_core.io.formats.writer.FileWriter` one process uses, so the bytes are the same. The
source hash runs at the same time, as it does in one process: a shard is written with a placeholder
where the digests go, and as soon as they are known (``final``) its header is rewritten in place
(same length), the file verified if asked, synced, renamed into place without replacing anything
(unless ``--force``) and recorded. ``--workers N`` runs the workers as forked processes and hashes
in the parent meanwhile (:class:`ForkWorkers`); the torchrun entry point (:mod:`mapper_core.dist`)
runs one in each rank.

Workers are forked on purpose, not spawned: a forked worker starts in about a millisecond with the
open reader, the plan and the entries it inherits; a spawned one would start a new interpreter,
import mapper-core (and torch, for a torch source) and open and plan the source again. Forking
needs Linux or macOS; elsewhere ``--workers`` is refused, and torchrun is the way to use several
processes.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import BadInputError, MapperError
from .atomic import TEMP_SUFFIX, AtomicFiles, Terminated, signals_held, write_all
from .clone import Cloner, block_size
from .rollback import STOP_SIGNALS
from .cost import assign_shards
from .formats.writer import Entry, FileWriter, RangeCopier
from .provenance import Hasher, final_metadata
from .shard_manifest import MANIFEST_SUFFIX, Manifest, manifest_path
from .shard_resume import check_skipped, todo_of
from .shared_digests import HashUnavailable, SharedDigests
from .worker_setup import prepare_worker

__all__ = ["ForkWorkers", "Manifest", "MANIFEST_SUFFIX", "ShardJob", "manifest_path", "write_parallel",
           "write_share"]

Step = Callable[[int, str], None]
Final = Callable[[bool], "dict[str, str] | None"]  # final(block): the final metadata, or None while not known


@dataclass
class ShardJob:
    """What any worker needs to write any shard of one output (a forked worker inherits it)."""

    files: Sequence[Path]
    groups: Sequence[Sequence[Entry]]
    meta: dict[str, str]  # with a placeholder where each source digest goes
    hashed: Sequence[Path]  # the source files whose digests complete ``meta`` (none: it is final)
    manifest: Manifest
    force: bool
    ours: frozenset[int] = frozenset()  # shards the manifest names: ours to replace without --force
    # shards over a file of an earlier output (--force): kept as finished temporaries and renamed together
    # with the index, so that a run that fails or is stopped leaves the earlier output as it was
    park: frozenset[int] = frozenset()
    verify: bool = False
    originals: dict[str, Entry] = field(default_factory=dict)
    clone: bool = True  # share the source's blocks where the filesystem clones (io/clone.py), as one process does

    def final_meta(self, digests: dict[Path, str]) -> dict[str, str]:
        return final_metadata(self.meta, digests, list(self.hashed)) if self.hashed else self.meta


def share_of_sources(hashed: Sequence[Path], parts: int) -> list[list[Path]]:
    """The source files split into ``parts`` shares of about equal bytes (the shards' own rule)."""
    sizes = [p.stat().st_size for p in hashed]
    return [[hashed[i] for i in share] for share in assign_shards(sizes, parts)]


@dataclass
class Share:
    """What a worker's shards came to: tensors verified, bytes cloned, and why cloning was refused
    (the filesystem's reason, for the report), if it was."""

    checked: int = 0
    cloned: int = 0
    refused: str | None = None
    parked: tuple[tuple[str, str], ...] = ()  # (destination, finished temporary) of the shards in ShardJob.park

    def add(self, other: "Share") -> "Share":
        return Share(self.checked + other.checked, self.cloned + other.cloned, self.refused or other.refused,
                     self.parked + other.parked)


def discard_parked(parked: Sequence[tuple[str, str]]) -> None:
    """Remove the finished temporaries of parked shards (a run that failed: the earlier output stays)."""
    for _, temp in parked:
        try:
            os.unlink(temp)
        except OSError:  # already gone; one left would be named as a stale temporary by the next run
            pass


def write_share(job: ShardJob, shards: Sequence[int], step: Step, final: Final) -> Share:
    """Write ``shards`` one after the other; each is put in place as soon as ``final`` knows the
    metadata, the rest at the end."""
    pending: list[tuple[int, AtomicFiles, FileWriter]] = []
    done = Share()
    try:
        for i in shards:
            pending.append(_shard_io(job, i, _write_temp, job, i, step))
            cloner = pending[-1][2].cloner
            if cloner is not None:
                done = done.add(Share(0, cloner.cloned, cloner.refusal))
            meta = final(False)
            while meta is not None and pending:
                done = done.add(_shard_io(job, pending[0][0], _put_in_place, job, *pending[0], meta))
                pending.pop(0)
        if pending:
            meta = final(True)
            while pending:
                done = done.add(_shard_io(job, pending[0][0], _put_in_place, job, *pending[0], meta))
                pending.pop(0)
    except BaseException:
        discard_parked(done.parked)
        raise
    finally:
        for _, out, _ in pending:
            out.discard()
    return done


def _shard_io(job: ShardJob, i: int, work: Callable, *args):
    """``work(*args)`` for shard ``i``; a failed write or rename names the shard (a worker's error
    reaches the user as 'worker N: ...')."""
    try:
        return work(*args)
    except OSError as exc:
        name = str(exc.filename or "")
        where = f" ({name})" if name and name != str(job.files[i]) and not name.endswith(TEMP_SUFFIX) else ""
        raise BadInputError(f"{job.files[i]}: writing failed: {exc.strerror or exc}{where}") from None


def _write_temp(job: ShardJob, i: int, step: Step) -> tuple[int, AtomicFiles, FileWriter]:
    out = AtomicFiles(replace=job.force or i in job.ours)
    try:
        fd = out.create(job.files[i])
        writer = FileWriter(fd, job.groups[i], job.meta, RangeCopier(), Cloner(block_size(fd)) if job.clone else None)
        writer.write(step)
    except BaseException:
        out.discard()
        raise
    return i, out, writer


def _put_in_place(job: ShardJob, i: int, out: AtomicFiles, writer: FileWriter, meta: dict[str, str]) -> Share:
    """Final header, verification, fsync, rename (never over another file without --force), record; a
    parked shard (``job.park``) is synced and handed back instead, for the index's commit to rename."""
    path = job.files[i]
    layout = writer.header
    with out:
        if meta is not job.meta:
            writer.finish(meta)
        checked = 0
        if job.verify:
            from .verify import verify_file

            checked = verify_file(out.temp_of(path), [job.originals.get(e.key, e) for e in writer.entries],
                                  shown_as=path)
        if i in job.park:
            return Share(checked, parked=tuple((str(d), str(t)) for d, t in out.release()))
        with signals_held():  # a shard in place is always in the manifest: Ctrl-C cannot split the two
            out.commit()
            job.manifest.record(path, layout, writer.header, writer.size)
    return Share(checked)


_EXIT_OF = {Terminated: 143, KeyboardInterrupt: 130}  # the CLI's codes, for a worker stopped by a signal


def run_workers(assignment: Sequence[Sequence[int]], job: ShardJob, progress: Callable[[int], None] | None = None
                ) -> tuple[Share, dict[str, str]]:
    """Each worker's shards in a forked process, while this process hashes the source; returns what
    the shards came to (:class:`Share`) and the final metadata. A worker's error is raised here with its message
    (finished shards stay recorded, so a rerun resumes); a worker that dies is named with its signal."""
    if "fork" not in multiprocessing.get_all_start_methods():
        raise BadInputError("--workers needs processes started by fork (Linux, macOS), which this system lacks; "
                            "run with --workers 1, or under torchrun (python -m mapper_core.dist)")
    ctx = multiprocessing.get_context("fork")  # children inherit the open reader, the plan and the entries
    done, errors, results = ctx.Value("q", 0), ctx.SimpleQueue(), ctx.SimpleQueue()
    digests = SharedDigests(ctx, job.meta, job.hashed)

    def child(w: int, shards: Sequence[int]) -> None:
        def step(n: int, key: str) -> None:
            with done.get_lock():
                done.value += n
        try:
            if hasattr(signal, "pthread_sigmask"):  # forked inside signals_held(): take signals again
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            prepare_worker()
            results.put(write_share(job, shards, step, digests.final))
        except BaseException as exc:
            code = exc.exit_code if isinstance(exc, MapperError) else 2
            if isinstance(exc, KeyboardInterrupt):
                code = _EXIT_OF[Terminated if isinstance(exc, Terminated) else KeyboardInterrupt]
            errors.put((isinstance(exc, HashUnavailable), w, str(exc) or type(exc).__name__, code))
            os._exit(code)

    procs = [ctx.Process(target=child, args=(w, s), name=f"mapper-worker-{w}") for w, s in enumerate(assignment) if s]
    hashers: list[Hasher] = []
    hash_error = None
    came: list[Share] = []  # the workers' results

    def collect() -> None:  # read as they come: a worker blocks on a full pipe until its result is read
        while not results.empty():
            came.append(results.get())
    try:
        for p in procs:
            with signals_held():  # a signal during the fork's own hooks would be swallowed there
                p.start()
        if job.hashed:  # after the fork: a fork must not copy a running thread
            shares = share_of_sources(list(job.hashed), min(len(procs) or 1, len(job.hashed)))
            hashers = [Hasher(share) for share in shares]
            for h in hashers:
                h.start()
            while any(h.is_alive() for h in hashers):  # even if a worker failed: the others' shards are kept
                for h in hashers:
                    h.join(0.2)
                collect()
                if progress:
                    progress(done.value)
            hash_error = digests.publish(hashers)
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(0.2)
            collect()
            if progress:
                progress(done.value)
        collect()
    except BaseException:  # Ctrl-C or SIGTERM in the parent: the workers clean up their temporaries too
        started = [p for p in procs if p.pid is not None]
        for p in started:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        for p in started:
            p.join()
        collect()
        discard_parked([pair for share in came for pair in share.parked])
        raise
    finally:
        for h in hashers:
            h.cancel()
    if progress:
        progress(done.value)
    total = Share()
    for share in came:
        total = total.add(share)
    try:
        if hash_error is not None:
            raise hash_error
        _raise_worker_failure(procs, errors)
    except BaseException:
        discard_parked(total.parked)
        raise
    return total, digests.final(True)


def _raise_worker_failure(procs: list, errors) -> None:
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    reported.sort()  # a worker's own error before one caused by another
    dead = [p for p in procs if p.exitcode and p.name not in {f"mapper-worker-{r[1]}" for r in reported}]
    if dead and not (reported and not reported[0][0]):
        p = dead[0]
        how = f"was killed by signal {-p.exitcode}" if p.exitcode < 0 else f"exited with {p.exitcode}"
        raise BadInputError(f"{p.name} {how}; the shards finished so far are kept in the manifest: rerun the "
                            "same command to write only the rest")
    if reported:
        _, w, message, code = reported[0]
        if code in _EXIT_OF.values():  # the worker was stopped by Ctrl-C or SIGTERM: so is the run
            raise Terminated() if code == _EXIT_OF[Terminated] else KeyboardInterrupt()
        err = BadInputError(f"worker {w}: {message}; the shards finished so far are kept in the manifest: rerun "
                            "the same command to write only the rest")
        err.exit_code = code
        raise err


class ForkWorkers:
    """``--workers N`` on one machine: forked processes. :mod:`mapper_core.dist` has the same
    methods for torch.distributed ranks (``leader``: the one that checks and writes the index)."""

    leader = True

    def __init__(self, workers: int):
        self.workers = workers

    def prepare(self, hashed: Sequence[Path]) -> None:
        """Nothing to start early: the hash starts once the workers are forked."""

    def agree(self, value: object) -> object:
        """The leader's value, on every worker."""
        return value

    def run(self, assignment: Sequence[Sequence[int]], job: ShardJob, progress: Callable[[int], None] | None
            ) -> tuple[Share, dict[str, str]]:
        return run_workers(assignment, job, progress)

    def barrier(self) -> None:
        pass


def write_parallel(files: Sequence[Path], groups: Sequence[Sequence[Entry]], index: Path, meta: dict[str, str],
                   hashed: Sequence[Path], sources: Sequence[Path], force: bool, executor: ForkWorkers,
                   verify: bool, originals: dict[str, Entry], progress: Callable[[int], None] | None,
                   clean_stale: bool = False, clone: bool = True) -> tuple[Share, dict[str, str], list[Path]]:
    """Every shard not already finished, shared out by ``executor``; then the index, last (by the
    leader). Returns what the shards came to (tensors verified, bytes cloned), the final metadata
    and the stale temporaries found. A shard whose header was padded for cloning is not the one
    the manifest's layout names, so a rerun writes it again (which, cloning, costs little)."""
    from .formats.shards import index_json

    executor.prepare(hashed)  # torch ranks start hashing now, while torch.distributed starts
    layouts = [FileWriter(-1, g, meta) for g in groups]  # headers and sizes only: nothing is written
    manifest = Manifest(index)
    plan, problem, refused = None, None, None
    if executor.leader:  # one view of what is finished, so every worker skips the same shards
        try:
            plan = todo_of(files, layouts, index, manifest, sources, force, clean_stale, bool(hashed))
        except MapperError as exc:
            problem, refused = (str(exc), exc.exit_code), exc
    plan, problem = executor.agree((plan, problem))
    if refused is not None:
        raise refused
    if problem is not None:  # the leader's refusal, on the other ranks
        err = BadInputError(problem[0])
        err.exit_code = problem[1]
        raise err
    todo, ours, park, stale, index_ours, manifest.source = plan  # the leader's view of the source, for every rank
    sizes = [layouts[i].size for i in todo]
    assignment = [[todo[j] for j in share] for share in assign_shards(sizes, executor.workers)]
    job = ShardJob(files, groups, meta, list(hashed), manifest, force, frozenset(ours), frozenset(park), verify,
                   originals, clone)
    done, final = executor.run(assignment, job, progress)
    if executor.leader:
        with AtomicFiles(replace=force or index_ours) as out:
            for dest, temp in done.parked:  # renamed with the index, all or none: the earlier output until then
                out.adopt(dest, temp)
            check_skipped(files, groups, set(range(len(files))) - set(todo), final, manifest)
            weight_map = {e.key: path.name for path, w in zip(files, layouts) for e in w.entries}
            total = sum(e.spec.nbytes for g in groups for e in g)
            data = index_json(weight_map, total, final)
            write_all(out.create(index), data)
            manifest.record_index(index, data)  # before the rename: the manifest can only go after it
            with signals_held():  # Ctrl-C waits for the manifest's removal too (a rerun copes if not)
                out.commit()
                manifest.remove()
    executor.barrier()  # nobody returns before the index is there
    return done, final, [Path(p) for p in stale]
