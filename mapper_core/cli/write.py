"""Writing DST for convert and export: one call into io.convert.convert, one progress bar, one summary."""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Iterator

PROGRESS_MIN_BYTES = 16 * 1024 * 1024  # below this a bar would only flicker


def shard_size(args: argparse.Namespace) -> int | None:
    """``--max-shard-size`` in bytes; called before anything is read, so a bad size fails first."""
    from ..io.formats.writer import parse_size

    return parse_size(args.max_shard_size) if args.max_shard_size else None


def write(ctx, args: argparse.Namespace, reader, plan, *, max_shard_size: int | None,
          rules_sha256: str | None, strict: bool = False):
    """Stream ``reader`` (renamed by ``plan``) to ``args.destination`` with the shared write options."""
    from ..io.convert import convert

    with progress(ctx, quiet=args.quiet or args.json) as update:
        return convert(
            args.source, args.destination, reader=reader, plan=plan, force=args.force,
            max_shard_size=max_shard_size, verify=args.verify, progress=update,
            rules_sha256=rules_sha256, strict=strict, hash_source=not args.no_source_hash,
        )


def result_lines(result) -> list[str]:
    """What convert and export both report under their first line: shards and verification."""
    lines = []
    if len(result.paths) > 1:
        lines.append(f"  {len(result.paths) - 1} shards + index: " + ", ".join(result.paths))
    if result.checked is not None:
        lines.append(f"  verified {result.checked} tensors bit for bit against the source")
    return lines


@contextmanager
def progress(ctx, quiet: bool) -> Iterator:
    """A rich progress bar on stderr for long work; None when quiet or stderr is not a terminal."""
    isatty = getattr(ctx.err, "isatty", None)
    if quiet or not (isatty and isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=Console(file=ctx.err), transient=True)
    task = None

    def update(done: int, total: int, key: str) -> None:
        nonlocal task
        if total < PROGRESS_MIN_BYTES:
            return
        if task is None:
            bar.start()
            task = bar.add_task("converting", total=total)
        bar.update(task, completed=done)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()
