"""mapper inspect SRC: keys, dtypes, shapes, bytes, totals and metadata, from headers."""
from __future__ import annotations

import argparse

from .options import add_formats, add_json, add_reader, add_source, reader_options

HELP = "show a checkpoint's tensors (key, dtype, shape, bytes), totals and metadata"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p)
    add_formats(p)
    add_reader(p)
    add_json(p, "the report")


def run(args: argparse.Namespace, ctx) -> int:
    from ..io.inspection import inspect_reader, render_text

    fmt = ctx.format_for(args.source, args.format)
    options = reader_options(args)
    if fmt.name == "torch":  # inspect looks and never writes: what convert refuses is shown (TorchReader)
        options["survey"] = True
    with ctx.open_reader(args.source, fmt.name, source=True, **options) as reader:
        report = inspect_reader(reader, fmt.name)
    if args.json:
        ctx.print_json(report.to_dict())
    else:
        ctx.print(render_text(report))
    return 0
