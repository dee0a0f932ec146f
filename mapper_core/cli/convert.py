"""mapper convert SRC DST [--rules RULES]: write a checkpoint as safetensors, streamed and atomic."""
from __future__ import annotations

import argparse
import warnings
from contextlib import contextmanager
from typing import Iterator

from ..errors import BadInputError
from .inspect import add_reader_arguments, reader_options

HELP = "convert a checkpoint to safetensors (with --rules: renamed and filtered by the plan), streamed and atomic"
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a killed process
PROGRESS_MIN_BYTES = 16 * 1024 * 1024  # below this a bar would only flicker


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SRC", help="checkpoint: .safetensors, *.safetensors.index.json, .pt/.pth/.bin/...")
    p.add_argument("destination", metavar="DST",
                   help="output .safetensors file, *.safetensors.index.json (sharded), or an existing folder")
    p.add_argument("--rules", metavar="RULES", help="rules file or plugin:name; without it keys keep their names")
    p.add_argument("--strict", action="store_true", help="with --rules: also refuse (exit 1) on unmatched keys")
    p.add_argument("--force", action="store_true", help="replace DST if it exists (never the source itself)")
    p.add_argument("--verify", action="store_true",
                   help="re-read the output with the safetensors library and compare every tensor bit for bit")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split the output into shards of at most SIZE (bytes, 500MB, 5GB, 2GiB) with an index")
    p.add_argument("--no-source-hash", action="store_true",
                   help="leave the source's SHA-256 out of the metadata (saves reading the source a second time)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--format", metavar="NAME", help="source format by name (default: detect)")
    add_reader_arguments(p)


def run(args: argparse.Namespace, ctx) -> int:
    from ..io.atomic import Terminated
    from ..io.convert import convert
    from ..io.formats.torch_format import TrustPickleWarning
    from ..io.formats.writer import parse_size

    if args.strict and not args.rules:
        raise BadInputError("--strict only applies with --rules (a plain conversion keeps every key); "
                            "add --rules RULES or drop --strict")
    shard_size = parse_size(args.max_shard_size) if args.max_shard_size else None  # bad sizes fail first
    ruleset = ctx.load_rules(args.rules) if args.rules else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reader = ctx.open_reader(args.source, args.format, **reader_options(args))
        for w in caught:  # the library warns; only the CLI prints
            if issubclass(w.category, TrustPickleWarning):
                ctx.warn(str(w.message))
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        with reader:
            plan = None
            if ruleset is not None:
                from ..plan.make import make_plan

                plan = make_plan(reader.specs(), ruleset, source_origin=args.source)
            with _progress(ctx, quiet=args.quiet or args.json) as progress:
                result = convert(
                    args.source, args.destination, reader=reader, plan=plan, force=args.force,
                    max_shard_size=shard_size, verify=args.verify, progress=progress,
                    rules_sha256=ruleset.sha256 if ruleset else None, strict=args.strict,
                    hash_source=not args.no_source_hash,
                )
    except Terminated:
        ctx.error("terminated; nothing was written")
        return EXIT_TERMINATED
    if args.json:
        ctx.print_json(result.to_dict())
    else:
        ctx.print(_summary(result))
    return 0


def _summary(result) -> str:
    from ..io.inspection import human_bytes

    lines = [f"wrote {result.destination}: {result.tensors} tensors, {human_bytes(result.tensor_bytes)} "
             f"({result.method})"]
    if len(result.paths) > 1:
        lines.append(f"  {len(result.paths) - 1} shards + index: " + ", ".join(result.paths))
    if result.rules:
        lines.append(f"  rules '{result.rules}': {result.left_behind} source keys left behind")
    if result.aliases:
        lines.append(f"  {result.aliases} aliased keys stored once (metadata 'mapper.aliases')")
    if result.checked is not None:
        lines.append(f"  verified {result.checked} tensors bit for bit against the source")
    return "\n".join(lines)


@contextmanager
def _progress(ctx, quiet: bool) -> Iterator:
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
