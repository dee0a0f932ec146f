"""Writing DST for convert and export: one call into io.convert.convert, one progress display, one summary."""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PROGRESS_MIN_BYTES = 16 * 1024 * 1024  # below this a bar would only flicker, and phase lines are noise
LISTED_SHARDS = 3  # up to this many shards are named; more are summarised


def shard_size(args: argparse.Namespace) -> int | None:
    """``--max-shard-size`` in bytes; called before anything is read, so a bad size fails first."""
    from ..io.formats.shards import parse_size

    return parse_size(args.max_shard_size) if args.max_shard_size else None


def check_destination(args: argparse.Namespace) -> None:
    """Refuse a SRC or DST that is surely a mistake: an empty one (an unset shell variable; an empty DST
    would write ./model.safetensors), or a checkpoint file's name for a DCP folder."""
    from ..errors import BadInputError
    from ..io.output_format import refuse_dcp_named_like_a_file

    if not args.source.strip():
        raise BadInputError(f"the input path SRC is {'empty' if not args.source else f'blank ({args.source!r})'}; "
                            "give the checkpoint's path")
    dst = args.destination
    if not dst.strip():
        raise BadInputError(f"the output path DST is {'empty' if not dst else f'blank ({dst!r})'}; give a file name (out.safetensors), an "
                            "index name (out.safetensors.index.json) or a folder (use . for the current one)")
    refuse_dcp_named_like_a_file(dst, getattr(args, "output_format", None), "--output-format dcp")


def refuse_existing(args: argparse.Namespace) -> None:
    """Refuse, before the source is read, a DST that the write would refuse anyway without --force.

    Reading a multi-GB torch file takes long; an existing output should not be found only after
    it. Only the names the output is certain to have are checked here: a ``.safetensors`` file
    or a folder's ``model.safetensors`` (unless --max-shard-size may shard it: that is known
    from the headers), a ``*.safetensors.index.json`` (unless a --workers run's manifest says it
    may be resumed). The write checks every name again just before it starts, and its last rename
    never replaces a file that appeared meanwhile.
    """
    check_destination(args)
    if args.force or getattr(args, "output_format", None) == "dcp":  # a DCP folder: its writer checks
        return
    from ..io.atomic import check_destinations
    from ..io.convert import DEFAULT_NAME
    from ..io.shard_manifest import manifest_path

    dst = Path(args.destination)
    if dst.is_dir():
        certain = [] if args.max_shard_size else [dst / DEFAULT_NAME]
    elif dst.name.lower().endswith(".safetensors.index.json"):
        certain = [] if manifest_path(dst).exists() else [dst]
    elif dst.name.lower().endswith(".safetensors"):
        certain = [] if args.max_shard_size else [dst]
    else:
        certain = []  # another name: refused with the reason once the write starts
    check_destinations(certain, (), force=False)


def write(ctx, args: argparse.Namespace, reader, plan, shown: "Phases", *, max_shard_size: int | None,
          rules_sha256: str | None, strict: bool = False, target_specs=None):
    """Stream ``reader`` (renamed by ``plan``) to ``args.destination`` with the shared write options.
    Returns the ConvertResult and the earlier output's files left beside it (:mod:`..io.earlier_output`);
    with --clean-stale the shards a replaced index named are removed, once the new output is in place."""
    from ..io.convert import convert
    from ..io.earlier_output import EarlierOutput, Leftovers, remove_replaced
    from ..io.provenance import source_files

    dcp = getattr(args, "output_format", None) == "dcp"
    follower = not getattr(getattr(args, "executor", None), "leader", True)  # torch.distributed: rank 0 says it
    earlier = None if dcp or follower else EarlierOutput.find(args.destination)  # before --force replaces the index
    result = convert(
        args.source, args.destination, reader=reader, plan=plan, force=args.force,
        max_shard_size=max_shard_size, verify=args.verify, progress=shown.update, phase=shown.phase,
        rules_sha256=rules_sha256, strict=strict, hash_source=not args.no_source_hash, target_specs=target_specs,
        clean_stale=args.clean_stale,
        output_format=getattr(args, "output_format", None), workers=getattr(args, "workers", 1),
        executor=getattr(args, "executor", None),
    )
    workers = getattr(args, "workers", 1)
    if workers > 1 and getattr(args, "executor", None) is None and (dcp or not result.destination.endswith(".json")):
        ctx.warn(f"--workers {workers} had no effect: " + (
            "a DCP folder is written by one process" if dcp else
            f"{result.destination} is one file, written by one process; give DST as NAME.safetensors.index.json "
            "or --max-shard-size SIZE to write shards on several"))
    left = earlier.left_by(result.paths, source_files(reader, Path(args.source))) if earlier else Leftovers()
    if args.clean_stale and left.replaced:
        left = remove_replaced(left)
    return result, left


def leftover_report(ctx, left) -> dict[str, list[str]]:
    """Warn on stderr about an earlier output's files left beside the new one; their JSON form."""
    from ..io.inspection import counted

    def names(paths) -> str:
        shown = ", ".join(Path(p).name for p in paths[:LISTED_SHARDS])
        return shown + (" …" if len(paths) > LISTED_SHARDS else "")

    if left.replaced:
        ctx.warn(f"{counted(len(left.replaced), 'shard')} of the earlier output, named by the index this write "
                 f"replaced, {'is' if len(left.replaced) == 1 else 'are'} still there and no longer used: "
                 f"{names(left.replaced)}; delete them (with --clean-stale, the run that replaces an index removes them)")
    if left.mismatched:
        ctx.warn(f"{counted(len(left.mismatched), 'file')} named by the index this write replaced "
                 f"{'does' if len(left.mismatched) == 1 else 'do'} not hold exactly the keys that index mapped to "
                 f"{'it' if len(left.mismatched) == 1 else 'them'}, so "
                 f"{'it was not one of its shards' if len(left.mismatched) == 1 else 'they were not its shards'}: left alone (also with "
                 f"--clean-stale): {names(left.mismatched)}")
    if left.beside:
        ctx.warn(f"{counted(len(left.beside), 'file')} of an earlier output in the other layout (one file vs. an "
                 f"index and shards) {'is' if len(left.beside) == 1 else 'are'} beside this one: "
                 f"{names(left.beside)}; a loader may pick {'it' if len(left.beside) == 1 else 'them'} up: delete "
                 f"{'it' if len(left.beside) == 1 else 'them'} if not wanted (--clean-stale leaves them alone)")
    return left.to_dict()


def result_lines(result, left=None, sharded: bool = True) -> list[str]:
    """What convert and export both report under their first line: shards, verification, cleaning.
    ``sharded=False``: the paths are not shards and an index (a DCP folder's data file and .metadata)."""
    from ..io.inspection import counted, human_bytes

    lines = []
    shards = result.paths[:-1] if len(result.paths) > 1 and sharded else ()
    if shards:
        sizes = [Path(p).stat().st_size for p in shards]
        names = [Path(p).name for p in shards]
        listed = ", ".join(names) if len(names) <= LISTED_SHARDS else f"{names[0]} … {names[-1]}"
        each = human_bytes(sizes[0]) if len(set(sizes)) == 1 else f"{human_bytes(min(sizes))} to {human_bytes(max(sizes))}"
        lines.append(f"  {counted(len(shards), 'shard')} of {each} ({human_bytes(sum(sizes))} in all): {listed}")
        lines.append(f"  index: {result.paths[-1]}")
    if result.checked is not None:
        lines.append(f"  verified {counted(result.checked, 'tensor')} bit for bit against the source")
    if result.stale_temps:
        count = len(result.stale_temps)
        what = f"{count} temporary file{'s' if count != 1 else ''} left by killed runs"
        shown = ", ".join(Path(p).name for p in result.stale_temps[:LISTED_SHARDS])
        shown += " …" if count > LISTED_SHARDS else ""
        lines.append(f"  removed {what}: {shown}" if result.stale_removed else
                     f"  note: {what} beside the output: {shown}; their processes are gone: "
                     "pass --clean-stale to remove them")
    if left is not None and left.removed:
        lines.append(f"  removed {counted(len(left.removed), 'shard')} of the earlier output that the replaced index "
                     f"named: {', '.join(Path(p).name for p in left.removed[:LISTED_SHARDS])}"
                     + (" …" if len(left.removed) > LISTED_SHARDS else ""))
    return lines


class Phases:
    """Shows the phases of a write: a rich bar on a terminal, one line per phase when piped.

    ``phase(name, total)`` starts one (reading, writing, hashing, verifying); ``update(done,
    total, key)`` moves the bar. Work under PROGRESS_MIN_BYTES shows nothing, so small
    conversions stay quiet; ``quiet`` shows nothing at all.
    """

    def __init__(self, ctx, quiet: bool, bar: bool):
        self.ctx = ctx
        self.quiet = quiet
        self._use_bar = bar and not quiet
        self._bar: Any = None
        self._task: Any = None
        self._shown = False  # whether anything was shown yet (later phases of small work stay quiet)

    def phase(self, name: str, total: int | None, what: str = "") -> None:
        from ..io.inspection import human_bytes

        if self.quiet or not (self._shown or (total or 0) >= PROGRESS_MIN_BYTES):
            return
        self._shown = True
        label = f"{name} {what}".strip()
        if not self._use_bar:
            size = f" ({human_bytes(total)})" if total else ""
            self.ctx.err.write(f"mapper: {label}{size}...\n")
            self.ctx.err.flush()
            return
        if self._bar is None:
            self._start_bar()
        if self._task is not None:
            self._bar.remove_task(self._task)
        # reading has no byte count to move the bar (torch loads the pickle in one call): a pulsing bar
        self._task = self._bar.add_task(label, total=None if name == "reading" else total or None)

    def update(self, done: int, total: int, key: str) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done, total=total)

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                             TimeRemainingColumn(), console=Console(file=self.ctx.err), transient=True)
        self._bar.start()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextmanager
def progress(ctx, quiet: bool) -> Iterator[Phases]:
    """The phases of a write on stderr: a bar on a terminal, phase lines when piped, nothing when quiet."""
    isatty = getattr(ctx.err, "isatty", None)
    shown = Phases(ctx, quiet, bar=bool(isatty and isatty()))
    try:
        yield shown
    finally:
        shown.close()


def reading(shown: Phases, path: str | Path) -> None:
    """Announce the reading phase: loading a large torch pickle can take seconds before any byte is written."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        return
    shown.phase("reading", size, str(path))
