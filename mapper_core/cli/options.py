"""The options commands share, one function per group, so every command spells them the same way.

The grammar: the checkpoint a command reads (SRC) and the file it writes (DST) are positional;
the rules file is ``--rules R`` (positional only for ``validate``, which reads nothing else);
``--format F`` names SRC's format and ``--target-format F`` the target's. The argument
names (``args.source``, ``args.rules``, ...) are the same in every command that has them.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..io import MAX_WORKERS

RULES_HELP = "rules file (.yaml/.yml/.json) or plugin:name (see `mapper rules`)"


def add_source(p: argparse.ArgumentParser, help: str = "checkpoint (.safetensors, *.safetensors.index.json, "
               ".pt/.pth/.bin/..., or any format a plugin reads) or spec file") -> None:
    p.add_argument("source", metavar="SRC", help=help)


def add_destination(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("destination", metavar="DST", help=help)


def add_rules(p: argparse.ArgumentParser, *, required: bool, help: str = RULES_HELP) -> None:
    p.add_argument("--rules", metavar="R", required=required, help=help)


def add_target(p: argparse.ArgumentParser) -> None:
    """What a plan checks shapes against: a checkpoint, or a model a plugin contributes."""
    p.add_argument("--target", metavar="T",
                   help="target checkpoint or spec file, or model:NAME for a model a plugin contributes "
                        "(enables shape checks)")
    p.add_argument("--model-arg", action="append", default=[], metavar="K=V",
                   help="keyword argument for a model:NAME target (repeatable; V read as JSON, else text)")
    p.add_argument("--target-unwrap", metavar="PATH",
                   help="--unwrap for a torch --target: dotted path of its state dict ('' = top level)")
    p.add_argument("--target-strip-prefix", metavar="PREFIX",
                   help="--strip-prefix for a torch --target, e.g. model. for a Lightning checkpoint ('' = none)")


def add_unmatched(p: argparse.ArgumentParser, what: str = "source keys no rule takes",
                  default: str = "default: the rules file's 'unmatched', else error") -> None:
    """What happens to the keys no rule takes (convert: source keys, export: target keys); one
    option, the same three choices, in every command that writes."""
    p.add_argument("--unmatched", choices=("error", "keep", "drop"),
                   help=f"{what}: error (refuse), keep (written under their own names), drop (left behind, "
                        f"listed); {default}")


def add_formats(p: argparse.ArgumentParser, *, target: bool = False) -> None:
    p.add_argument("--format", metavar="F",
                   help="format of SRC by name (default: detect; `mapper plugins` lists the formats)")
    if target:
        p.add_argument("--target-format", metavar="F", help="format of --target by name (default: detect)")


def add_reader(p: argparse.ArgumentParser) -> None:
    """Options for opening torch checkpoints; other formats ignore them."""
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a torch pickle that weights_only refuses (RUNS CODE from the file; only for trusted files)")
    p.add_argument("--allow-expansion", action="store_true",
                   help="read a torch file (or DCP folder, compressed .npz, GGUF header) that grows past "
                        "max(256 MiB, 4x its size) when loaded or written (compressed records, memory its pickle asks for, repeated "
                        "views), a DCP .metadata past 1 GiB and a spec file past 256 MiB, and let a rule's transform "
                        "steps make a tensor past max(256 MiB, 4x its source); default: refuse all")
    p.add_argument("--unwrap", metavar="PATH",
                   help="dotted path of the state dict inside a torch SRC ('' = top level; a number indexes a list); "
                        "default: automatic")
    p.add_argument("--strip-prefix", metavar="PREFIX",
                   help="key prefix to strip from SRC's keys ('' = none); default: 'module.' when every key has it")
    p.add_argument("--allow-outside-shards", action="store_true",
                   help="let a *.safetensors.index.json (or a DCP folder's .metadata) name shards (data files) "
                        "whose real path (symlinks resolved) is outside its folder, and a DCP folder's .metadata "
                        "be such a link itself")


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options actually given, so third-party formats see no surprise keywords."""
    options: dict[str, Any] = {}
    if args.trust_pickle:
        options["trust_pickle"] = True
    if args.allow_expansion:
        options["allow_expansion"] = True
    if args.unwrap is not None:
        options["unwrap"] = args.unwrap
    if args.strip_prefix is not None:
        options["strip_prefix"] = args.strip_prefix
    if getattr(args, "allow_outside_shards", False):
        options["allow_outside_shards"] = True
    return options


def target_options(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    """The reader options for a --target file: SRC's, but its own --target-unwrap/--target-strip-prefix
    in place of --unwrap/--strip-prefix (those name SRC's keys, not the target's)."""
    out = {k: v for k, v in options.items() if k not in ("unwrap", "strip_prefix")}
    if getattr(args, "target_unwrap", None) is not None:
        out["unwrap"] = args.target_unwrap
    if getattr(args, "target_strip_prefix", None) is not None:
        out["strip_prefix"] = args.target_strip_prefix
    return out


def add_strict(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--strict", action="store_true", help=help)


def refuse_blank_target(args: argparse.Namespace) -> None:
    """An empty or blank --target (an unset shell variable) is refused as an empty SRC is, before any
    checkpoint is read, rather than taken for no target at all."""
    target = getattr(args, "target", None)
    if target is not None and not target.strip():
        from ..errors import BadInputError
        from .context import blank_path

        raise BadInputError(blank_path(target))


def refuse_strict_without_target(args: argparse.Namespace) -> None:
    """--strict checks the target's keys: without --target it would check nothing and pass silently."""
    if args.strict and args.target is None:
        from ..errors import BadInputError

        raise BadInputError("--strict fails the plan on uninitialized target keys, and only --target says what "
                            "the target keys are; add --target T (a checkpoint, a spec file or model:NAME) or drop "
                            "--strict (unmatched source keys fail the plan without it, under unmatched: error)")


def add_write(p: argparse.ArgumentParser) -> None:
    """How convert and export write DST (both through io.convert.convert)."""
    p.add_argument("--force", action="store_true", help="replace DST if it exists (never the source itself)")
    p.add_argument("--verify", action="store_true",
                   help="before the output is put in place, re-read it and compare every tensor bit for bit")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split the output into shards of at most SIZE (bytes, 500MB, 5GB, 2GiB) with an index")
    p.add_argument("--no-source-hash", action="store_true",
                   help="leave the source's SHA-256 out of the metadata (saves reading the source a second time)")
    p.add_argument("--clean-stale", action="store_true",
                   help="remove the temporary files that killed runs left beside DST (listed otherwise)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_json(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON (one line; see --indent)")
    p.add_argument("--indent", type=_indent, metavar="N",
                   help="with --json: indent nested values by N spaces (0-8) for reading; slower on big plans")


def add_workers(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--workers", type=_workers, default=1, metavar="N", help=f"{help} (1 to {MAX_WORKERS})")


def _workers(value: str) -> int:
    text = value.strip()
    if not text.isdecimal() or len(text) > 6 or not 1 <= int(text) <= MAX_WORKERS:
        shown = repr(value) if len(value) <= 30 else f"'{value[:20]}...' ({len(value)} characters)"
        raise argparse.ArgumentTypeError(f"expected a number of workers, at least 1 and at most {MAX_WORKERS}, "
                                         f"got {shown}")
    return int(text)


def _indent(value: str) -> int:
    if not value.isdigit() or int(value) > 8:
        raise argparse.ArgumentTypeError(f"expected a number of spaces from 0 to 8, got {value!r}")
    return int(value)
