"""What a sharded run finds of an earlier, stopped one: the shards it finished (from the manifest,
:mod:`.shard_manifest`), whether they are still this source's, and what is left to write."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from ..errors import BadInputError
from .atomic import AtomicFiles, check_destinations, remove_stale, signals_held, stale_temps
from .formats.writer import Entry, FileWriter
from .shard_manifest import Manifest, source_identity


def todo_of(files: Sequence[Path], layouts: Sequence[FileWriter], index: Path, manifest: Manifest,
            sources: Sequence[Path], force: bool, clean_stale: bool, hashing: bool
            ) -> tuple[list[int], list[int], list[int], list[str], bool, list[list]]:
    """(shards still to write, shards the manifest names, shards to park (``ShardJob.park``), stale
    temporaries, whether the index is one an earlier run put in place before it was stopped, the source
    files' identity); refuses destinations as one process would, and, without the source hash, finished
    shards of a source that changed since."""
    try:
        manifest.source = source_identity(sources)
    except OSError as exc:  # a source file gone since it was opened (or never there: a DCP data file)
        raise BadInputError(f"{exc.filename}: a file of the source cannot be read: {exc.strerror or exc}") from None
    records = manifest.records()
    finished = {i for i, (path, w) in enumerate(zip(files, layouts))
                if manifest.finished(path, w.header, w.size, records)}
    if not hashing:  # no digest in the headers to compare once the hash is done: the files' identity must tell
        for i in sorted(finished):
            change = manifest.source_changes(records[files[i].name])
            if change is not None:
                raise BadInputError(f"{files[i]}: was finished by an earlier run, and the source changed since "
                                    f"({change}); without the source hash (--no-source-hash) nothing tells whether "
                                    f"its tensors are this source's. {_RESTART.format(manifest=manifest.path)}")
    todo = [i for i in range(len(files)) if i not in finished]
    # a shard the manifest names is ours (finished, or damaged since): replaced without --force, never the source
    ours = [i for i in range(len(files)) if files[i].name in records]
    index_ours = manifest.owns_index(index)
    check_destinations([files[i] for i in set(ours) | finished] + [index] * index_ours, sources, force=True)
    check_destinations([files[i] for i in todo if i not in ours] + [index] * (not index_ours), sources, force)
    stale = [p for dest in list(files) + [index] for p in stale_temps(dest)]
    if clean_stale:
        remove_stale(stale)
    # with --force, a shard whose file exists and is not ours belongs to the earlier output
    park = [i for i in todo if i not in ours and (files[i].exists() or files[i].is_symlink())] if force else []
    return todo, ours, park, [str(p) for p in stale], index_ours, manifest.source


def check_skipped(files: Sequence[Path], groups: Sequence[Sequence[Entry]], skipped: set[int],
                  final: dict[str, str], manifest: Manifest) -> None:
    """A shard an earlier run finished must carry the header this run would write: a source that
    changed since (another SHA-256) would give an index over shards of two different sources."""
    records = manifest.records()
    for i in sorted(skipped):
        header = FileWriter(-1, groups[i], final).header
        if records.get(files[i].name, {}).get("header") != hashlib.sha256(header).hexdigest():
            raise BadInputError(f"{files[i]}: was finished by an earlier run from a different source (its metadata "
                                f"differs from this run's). {_RESTART.format(manifest=manifest.path)}")


def commit_over_manifest(out: AtomicFiles, index: Path | None) -> None:
    """Commit a one-process write of ``index`` and its shards, and remove the resume manifest an
    earlier, stopped ``--workers`` run of the same output left beside it: the output it recorded is
    replaced. Never before the commit point (a commit that fails leaves the earlier shards and their
    record as they were), and with no Ctrl-C between the two, as a ``--workers`` run does it."""
    with signals_held():
        out.commit()
        if index is not None:
            try:
                Manifest(index).remove()
            except OSError:  # the output is in place; a record left names files that are no longer there
                pass


_RESTART = ("To convert this source, delete {manifest} and rerun with --force (which replaces the finished "
            "shards); to finish the earlier output, convert the source that run used")
