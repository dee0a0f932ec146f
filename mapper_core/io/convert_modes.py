"""The other ways convert writes: a DCP folder, and a sharded output on several workers.

:func:`mapper_core.io.convert.convert` plans, checks and builds the entries once, then hands them
here when asked for ``output_format="dcp"`` or ``workers > 1``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import TORCH_EXTRA, BadInputError, MissingExtraError, torch_available
from ..plan.plan import Plan
from .convert_result import ConvertResult, PhaseCallback, ProgressCallback, cloned_method, counting
from .formats.base import Reader
from .formats.writer import Entry
from .provenance import metadata, source_files


def convert_dcp(src: Path, dst: Path, reader: Reader, plan: Plan | None, entries: list[Entry],
                 aliases: dict[str, str], left_behind: int, force: bool, verify: bool,
                 progress: ProgressCallback | None, rules_sha256: str | None, clean_stale: bool = False
                 ) -> ConvertResult:
    if not torch_available():  # refuse before anything is written
        raise MissingExtraError(f"{dst}: writing a DCP checkpoint needs torch, which is not installed: {TORCH_EXTRA}")
    from .dcp_writer import write_dcp  # torch: DCP's blobs and metadata classes are torch's

    total = sum(e.spec.nbytes for e in entries)
    # a plain copy of a DCP folder keeps its non-tensor items (bytes, never unpickled); rules move tensors only
    offered = getattr(reader, "byte_items", None)
    carried = offered() if offered is not None and plan is None else {}
    try:
        files, checked, stale, removed = write_dcp(dst, entries, aliases, counting(progress, total), verify,
                                          source_files(reader, src), force, clean_stale, carried)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BadInputError(f"{dst}: writing failed: {exc.strerror or exc}{where}; nothing was written") from None
    return ConvertResult(
        source=str(src), destination=str(dst), paths=tuple(str(p) for p in files), tensors=len(entries),
        aliases=len(aliases), left_behind=left_behind, tensor_bytes=total,
        file_bytes=sum(p.stat().st_size for p in files), method="tensor", source_sha256=None,
        rules=plan.rules_name if plan else None, rules_sha256=rules_sha256 if plan else None, checked=checked,
        stale_temps=tuple(str(p) for p in stale), stale_removed=clean_stale and bool(stale),
        non_tensors_carried=tuple(carried), earlier_removed=tuple(str(p) for p in removed),
    )


def convert_parallel(src: Path, reader: Reader, plan: Plan | None, files: list[Path], groups: list[list[Entry]],
                      index: Path, sources: list[Path], aliases: dict[str, str], left_behind: int, force: bool,
                      verify: bool, progress: ProgressCallback | None, phase: PhaseCallback | None,
                      rules_sha256: str | None, hash_source: bool, executor, originals: dict[str, Entry],
                      method: str, clean_stale: bool = False, clone: bool = True) -> ConvertResult:
    """Shards shared out by ``executor`` (forked workers, or torch.distributed ranks). The source is
    hashed while they write; each shard is put in place once its final header is known."""
    from .parallel import write_parallel

    hashed = sources if hash_source else []
    meta = metadata(reader, src, plan, rules_sha256, aliases, hashed)
    total = sum(e.spec.nbytes for g in groups for e in g)
    if phase:
        phase("writing", total)
    try:
        done, meta, stale = write_parallel(files, groups, index, meta, hashed, sources, force, executor, verify,
                                           originals, (lambda n: progress(n, total, "")) if progress else None,
                                           clean_stale, clone)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BadInputError(f"{index}: writing failed: {exc.strerror or exc}{where}; finished shards are kept "
                            "(rerun to resume)") from None
    written = files + [index]
    return ConvertResult(
        source=str(src), destination=str(index), paths=tuple(str(p) for p in written),
        tensors=sum(len(g) for g in groups), aliases=len(aliases), left_behind=left_behind, tensor_bytes=total,
        file_bytes=sum(p.stat().st_size for p in written), method=cloned_method(method, done.cloned),
        source_sha256=meta.get("mapper.source_sha256"), rules=plan.rules_name if plan else None,
        rules_sha256=rules_sha256 if plan else None, checked=done.checked if verify else None,
        stale_temps=tuple(str(p) for p in stale), stale_removed=clean_stale and bool(stale),
        cloned_bytes=done.cloned, clone_refused=done.refused,
    )
