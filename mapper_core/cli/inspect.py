"""mapper inspect CKPT: keys, dtypes, shapes, bytes, totals and metadata, from headers."""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

HELP = "show a checkpoint's tensors (key, dtype, shape, bytes), totals and metadata"


def add_reader_arguments(p: argparse.ArgumentParser) -> None:
    """Options for opening torch checkpoints; other formats ignore them."""
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a torch pickle that weights_only refuses (RUNS CODE from the file; only for trusted files)")
    p.add_argument("--unwrap", metavar="PATH",
                   help="dotted path of the state dict inside a torch checkpoint ('' = top level); default: automatic")
    p.add_argument("--strip-prefix", metavar="PREFIX",
                   help="key prefix to strip ('' = none); default: 'module.' when every key has it")


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options actually given, so third-party formats see no surprise keywords."""
    options: dict[str, Any] = {}
    if getattr(args, "trust_pickle", False):
        options["trust_pickle"] = True
    if getattr(args, "unwrap", None) is not None:
        options["unwrap"] = args.unwrap
    if getattr(args, "strip_prefix", None) is not None:
        options["strip_prefix"] = args.strip_prefix
    return options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint, *.safetensors.index.json, or spec file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--format", metavar="NAME", help="format by name (default: detect)")
    add_reader_arguments(p)


def run(args: argparse.Namespace, ctx) -> int:
    from ..io.formats.base import choose_format
    from ..io.formats.torch_format import TrustPickleWarning
    from ..io.inspection import inspect_reader, render_text

    fmt = choose_format(args.checkpoint, ctx.formats(), args.format)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fmt.open(Path(args.checkpoint), **reader_options(args)) as reader:
            report = inspect_reader(reader, fmt.name)
    for w in caught:  # the library warns; only the CLI prints
        if issubclass(w.category, TrustPickleWarning):
            ctx.warn(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if args.json:
        ctx.print_json(report.to_dict())
    else:
        ctx.print(render_text(report))
    return 0
