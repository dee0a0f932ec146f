"""convert: a checkpoint (+ a Plan) → safetensors, streamed one tensor at a time, written atomically.

Without a plan every key keeps its name (a plain format conversion); with one, the plan's
loadable entries are written under their target names and everything else stays behind.
A plan with errors stops before anything is written.

Two ways to move bytes, chosen by what the reader offers:

- readers with ``locate(key)`` (safetensors): raw byte ranges are copied file to file,
  never decoded; torch is not imported;
- a torch zip checkpoint is memory-mapped by its reader: each contiguous tensor is a byte
  range of the file (:class:`~mapper_core.io.formats.pages.FileMappings`) and is copied the
  same way, without page faults or a pass through our memory;
- everything else (other readers, legacy torch files, non-contiguous views): each tensor
  is fetched, made contiguous (a copy when it is not), written, and dropped; the tensor
  itself is only read.

A rule's ``transform:`` steps: a chain of reshape/unsqueeze/squeeze only changes the header
(the bytes are copied as above, untouched); any other step decodes that one tensor through
torch, transforms it and writes the result.

Aliases (tied weights: the same view of one storage, from ``reader.aliases()``, or two keys
over the same byte range) are stored once and recorded in the metadata; see
:mod:`mapper_core.formats.aliases`. The source files are hashed (SHA-256) on a background
thread while the bytes are copied; the header is written with a placeholder first and
rewritten at the end.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .clone import Cloner, block_size
from . import MAX_WORKERS
from .atomic import AtomicFiles, check_destinations, remove_stale, stale_temps, write_all
from .convert_result import ConvertResult, PhaseCallback, ProgressCallback, cloned_method, counting
from .output_format import is_dcp_destination, refuse_dcp_named_like_a_file
from ..errors import BadInputError
from .convert_arguments import check_convert_arguments
from .convert_checks import refuse_misfits, refuse_nothing_to_write, refuse_plan_errors
from .formats.base import Reader, non_tensors
from .convert_entries import entries_to_write
from .formats.entries import DATA, EntryColumns, entry_sizes, keys_of
from .formats.writer import Entry, FileRange, FileWriter, RangeCopier
from .formats.shards import index_json, parse_size, shard_names, split_shards
from .provenance import Hasher, final_metadata, metadata, non_tensors_left, source_files
from .shard_resume import commit_over_manifest
from ..plan.make import make_plan
from ..plan.plan import Plan
from ..rules.ruleset import RuleSet
from ..specs import TensorSpec

if TYPE_CHECKING:
    from .verify import StreamVerifier

DEFAULT_NAME = "model.safetensors"


def convert(src: str | Path, dst: str | Path, *, reader: Reader | None = None, plan: Plan | None = None,
            rules: RuleSet | None = None, target_specs: Mapping[str, TensorSpec] | None = None,
            target_module_types: Mapping[str, str] | None = None, unmatched: str | None = None,
            force: bool = False, max_shard_size: int | str | None = None, verify: bool = False,
            progress: ProgressCallback | None = None, phase: PhaseCallback | None = None,
            rules_sha256: str | None = None, hash_source: bool = True, strict: bool = False,
            clean_stale: bool = False, allow_expansion: bool = False, output_format: str | None = None,
            workers: int = 1, executor: Any = None, clone: bool = True) -> ConvertResult:
    """Write ``src`` (through ``reader``, or the built-in formats) as safetensors at ``dst``.

    ``dst`` is a ``.safetensors`` file, a ``.safetensors.index.json`` (always sharded) or an
    existing folder (``model.safetensors`` inside it). ``max_shard_size`` (bytes or ``"5GB"``)
    splits the output Hugging Face style when it does not fit one shard. ``verify`` re-reads
    the output with the safetensors library before it is put in place.

    Renaming: give a ``plan``, or ``rules`` and the plan is made here from the source's headers
    (with ``target_specs``, ``target_module_types`` and the ``unmatched`` policy, as
    ``mapper plan`` makes it). ``target_specs`` also checks a given plan's (or a plain
    conversion's) result: a tensor the target lacks, or has in another shape, is refused.
    Before anything is written, :class:`~mapper_core.errors.PlanError` refuses a plan with
    errors and a conversion that would write no tensor.

    ``progress(done, total, key)`` reports the bytes written; with ``phase(name, total)`` too,
    each phase (``writing``, ``hashing``, ``verifying``) is announced and ``progress`` then
    reports within it.

    ``output_format="dcp"`` writes a ``torch.distributed.checkpoint`` folder at ``dst`` instead
    (:mod:`mapper_core.io.dcp_writer`); ``max_shard_size`` and the source hash do not apply. A
    ``dst`` named like a checkpoint file (``x.safetensors``, ``x.pt``) is refused for it.

    ``workers=N`` writes a sharded output's shards on N processes (:mod:`mapper_core.io.parallel`):
    byte for byte what one process writes, each shard atomic and recorded in a manifest so that a
    rerun after a crash writes only the rest; the index comes last. ``executor`` shares the shards
    out some other way (:mod:`mapper_core.dist` passes its torch.distributed ranks).

    ``allow_expansion`` lifts the bound on tensors that grow past their source (a transform in
    the plan, a view in a torch file read by the reader opened here); a strided view is still
    written a piece at a time, never made contiguous whole.

    Where the filesystem shares blocks between files (XFS, Btrfs), byte ranges are cloned, not
    copied, and the header is padded so that they line up (:mod:`mapper_core.io.clone`); the
    result's ``method`` says ``clone`` and ``cloned_bytes`` how much. ``clone=False`` copies.

    Without ``force`` nothing is ever replaced, even a file that another process wrote to
    ``dst`` meanwhile (:class:`~mapper_core.errors.OutputExistsError`). Temporary files that
    killed runs left beside the output are listed in the result, and removed with ``clean_stale``.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise BadInputError(f"workers must be at least 1 and at most {MAX_WORKERS}, not {workers}")
    check_convert_arguments(src, dst, plan, rules, reader, target_specs)
    refuse_dcp_named_like_a_file(dst, output_format)
    src = Path(src)
    if plan is not None and plan.mapped and plan.has_errors(strict=strict):
        refuse_plan_errors(plan, strict)  # before the source is even opened
    own_reader = reader is None
    if reader is None:
        from .formats import open_checkpoint

        # the reader it opens obeys allow_expansion too (formats it does not concern ignore it)
        reader = open_checkpoint(src, allow_expansion=True) if allow_expansion else open_checkpoint(src)
    # A reader it opened is closed as a context manager: a plugin reader whose close() fails after the
    # output is in place warns (mapper_core.plugins.CheckpointWarning) instead of losing the result.
    with reader if own_reader else nullcontext():
        if plan is None and rules is not None:
            plan = make_plan(reader.specs(), rules, target_specs, source_origin=str(src), unmatched=unmatched,
                             non_tensor=non_tensors(reader), target_module_types=target_module_types,
                             allow_expansion=allow_expansion)
        if plan is not None:
            rules_sha256 = rules_sha256 or plan.rules_sha256  # a plan made by make_plan knows its rules' hash
            if not plan.mapped:  # nothing matched: a wrong prefix, said as such before the unmatched list
                refuse_nothing_to_write(src, reader.specs(), plan, non_tensors(reader))
            refuse_plan_errors(plan, strict)
        if getattr(reader, "meta_keys", None) or getattr(reader, "unstorable_keys", None):
            from .formats.torch_checks import refuse_unwritable

            refuse_unwritable(reader, plan)  # a meta tensor, a complex128 one: refused before anything is written
        result = _convert(src, Path(dst), reader, plan, force,
                          None if max_shard_size is None else parse_size(max_shard_size),
                          verify, progress, phase, rules_sha256, hash_source,
                          target_specs if plan is None or plan.target_count is None else None, clean_stale,
                          output_format, workers, executor, clone)
        return non_tensors_left(result, reader, is_dcp_destination(Path(dst), output_format))


def _convert(src: Path, dst: Path, reader: Reader, plan: Plan | None, force: bool, max_shard: int | None,
             verify: bool, progress: ProgressCallback | None, phase: PhaseCallback | None,
             rules_sha256: str | None, hash_source: bool,
             target_specs: Mapping[str, TensorSpec] | None, clean_stale: bool = False,
             output_format: str | None = None, workers: int = 1, executor: Any = None,
             clone: bool = True) -> ConvertResult:
    specs = reader.specs()
    entries, aliases, left_behind, originals, (targets, sources) = entries_to_write(reader, specs, plan)
    if not entries:
        refuse_nothing_to_write(src, specs, plan, non_tensors(reader))
    if target_specs is not None:
        spec_of = {e.key: e.spec for e in entries}
        sources_of = dict(zip(targets, sources))
        written = [(sources_of[e.key], e.key, e.spec) for e in entries]
        written += [(sources_of[a], a, spec_of[k]) for a, k in aliases.items()]
        refuse_misfits(written, target_specs, plan.target_origin if plan else None)
    copied = len(entries) if isinstance(entries, EntryColumns) else sum(map(isinstance, map(DATA, entries),
                                                                             repeat(FileRange)))
    method = "byte-copy" if copied == len(entries) else "tensor" if copied == 0 else "byte-copy+tensor"
    if is_dcp_destination(dst, output_format):
        from .convert_modes import convert_dcp

        return convert_dcp(src, dst, reader, plan, entries, aliases, left_behind, force, verify, progress,
                            rules_sha256, clean_stale)

    dst, always_index = _resolve_dst(dst)
    groups = split_shards(entries, max_shard)
    sharded = always_index or len(groups) > 1
    if sharded:
        files, index = shard_names(dst, len(groups))
    else:
        files, index, groups = [dst], None, [entries]
    sources = source_files(reader, src)
    if (workers > 1 or executor is not None) and index is not None:
        from .convert_modes import convert_parallel
        from .parallel import ForkWorkers

        return convert_parallel(src, reader, plan, files, groups, index, sources, aliases, left_behind, force,
                                verify, progress, phase, rules_sha256, hash_source, executor or ForkWorkers(workers),
                                originals, method, clean_stale, clone)
    check_destinations(files + ([index] if index else []), sources, force)
    stale = [p for dest in files + ([index] if index else []) for p in stale_temps(dest)]
    if clean_stale:
        remove_stale(stale)

    hasher = Hasher(sources) if hash_source else None
    meta = metadata(reader, src, plan, rules_sha256, aliases, sources if hasher else [])
    total = sum(entry_sizes(entries))
    step = counting(progress, total)
    verifier = None
    if verify:
        from .verify import StreamVerifier

        verifier = StreamVerifier(originals)

    def phased(name: str, size: int) -> Callable[[int, str], None] | None:
        """Announce a phase after writing; its own byte count goes to ``progress``."""
        if phase is None:
            return None
        phase(name, size)
        return counting(progress, size)

    try:
        with AtomicFiles(replace=force) as out:
            if phase:
                phase("writing", total)
            writers, meta = _write_files(out, files, groups, meta, hasher, sources, step, phased, clone,
                                         verifier)
            if index is not None:
                weight_map = {k: path.name for path, w in zip(files, writers) for k in keys_of(w.entries)}
                write_all(out.create(index), index_json(weight_map, total, meta))
            checked = None
            if verifier is not None:  # the bytes were compared while they were written; what is left
                verifying = phased("verifying", total)
                checked = verifier.finish([(out.temp_of(path), path, [originals.get(e.key, e) for e in w.entries])
                                           for path, w in zip(files, writers)], verifying)
            commit_over_manifest(out, index)  # a stopped --workers run's record of the output it replaces goes too
    except MemoryError:  # e.g. a huge view read with allow_expansion: nothing was put in place
        raise BadInputError(f"{src}: out of memory while writing {dst}; nothing was written") from None
    except OSError as exc:  # disk full, permissions, I/O errors: nothing was put in place
        where = f" ({exc.filename})" if exc.filename else ""
        raise BadInputError(f"{dst}: writing failed: {exc.strerror or exc}{where}; nothing was written") from None
    finally:
        if hasher:
            hasher.cancel()
        if verifier is not None:
            verifier.close()
    written = files + ([index] if index else [])
    cloners = [w.cloner for w in writers if w.cloner is not None]
    cloned = sum(c.cloned for c in cloners)
    method = cloned_method(method, cloned)
    return ConvertResult(
        source=str(src), destination=str(index or files[0]), paths=tuple(str(p) for p in written),
        tensors=len(entries), aliases=len(aliases), left_behind=left_behind, tensor_bytes=total,
        file_bytes=sum(p.stat().st_size for p in written), method=method,
        source_sha256=meta.get("mapper.source_sha256"), rules=plan.rules_name if plan else None,
        rules_sha256=rules_sha256 if plan else None, checked=checked,
        stale_temps=tuple(str(p) for p in stale), stale_removed=clean_stale and bool(stale),
        cloned_bytes=cloned, clone_refused=next((c.refusal for c in cloners if c.refusal), None),
    )


def _write_files(out: AtomicFiles, files: list[Path], groups: list[list[Entry]], meta: dict[str, str],
                 hasher: Hasher | None, sources: list[Path], step: Callable[[int, str], None],
                 phased: Callable[[str, int], Callable[[int, str], None] | None], clone: bool = True,
                 verifier: StreamVerifier | None = None) -> tuple[list[FileWriter], dict[str, str]]:
    """Every shard's header and data; then, once the source hash is known, the final headers."""
    if hasher:
        hasher.start()
    copier = RangeCopier()
    writers = []
    for path, group in zip(files, groups):
        fd = out.create(path)
        w = FileWriter(fd, group, meta, copier, Cloner(block_size(fd)) if clone else None)
        w.write(step)
        if verifier is not None:  # compared on its thread while the next file is written, the disk syncs, the hash ends
            for e, begin in zip(w.entries, w.layout.begins):
                verifier.written(out.temp_of(path), path, e, w.data_start + begin)
        writers.append(w)
    for w in writers:  # flush the data while the hash may still be running; commit's fsync is then short
        os.fsync(w.fd)
    if hasher:
        waiting = None
        within = phased("hashing", hasher.total) if hasher.is_alive() else None  # the copy outran the hash
        if within is not None:
            seen = 0

            def waiting(done: int, total: int) -> None:
                nonlocal seen
                within(done - seen, "")
                seen = done
        meta = final_metadata(meta, hasher.result(waiting), sources)
        for w in writers:
            w.finish(meta)
    return writers, meta


def _resolve_dst(dst: Path) -> tuple[Path, bool]:
    """(the single-file destination or index path, whether the output is always sharded)."""
    if dst.is_dir():
        return dst / DEFAULT_NAME, False
    name = dst.name.lower()
    if name.endswith(".safetensors.index.json"):
        return dst, True
    if name.endswith(".safetensors"):
        return dst, False
    raise BadInputError(
        f"{dst}: the output must end with .safetensors (or .safetensors.index.json for shards), or be an existing folder"
    )
