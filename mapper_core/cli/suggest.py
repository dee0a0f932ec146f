"""mapper suggest --source S --target T [-o rules.yaml] [--json]: infer the rules that map S into T."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import BadInputError
from .options import add_json, add_reader, reader_options

HELP = "infer a rules file that maps SOURCE into TARGET (checkpoints or model:NAME), with its evidence"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, metavar="S", help="source checkpoint or spec file, or model:NAME")
    p.add_argument("--target", required=True, metavar="T", help="target checkpoint or spec file, or model:NAME")
    add_model_args(p, "a model:NAME target")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the rules file here: JSON if FILE ends in .json (without the evidence comments), "
                        "else YAML (default: print the YAML)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--name", default="suggested", help="the rules' name (default: suggested)")
    add_reader(p)
    add_json(p, "the pairing (every pair with its confidence and signals) and the rules file")


def add_model_args(p: argparse.ArgumentParser, target: str, source: str = "a model:NAME source") -> None:
    """``--model-arg`` (the target model's) and ``--source-model-arg``: suggest and verify build both."""
    p.add_argument("--model-arg", action="append", default=[], metavar="K=V",
                   help=f"keyword argument for {target} (repeatable; V read as JSON, else text)")
    p.add_argument("--source-model-arg", action="append", default=[], metavar="K=V",
                   help=f"keyword argument for {source} (repeatable)")


def model_name(spec: str) -> str | None:
    """``NAME`` for ``model:NAME`` (unless a file has that name), else None."""
    return spec[len("model:"):] if spec.startswith("model:") and not Path(spec).exists() else None


def load_side(spec: str, model_args: list[str], option: str, ctx, options: dict):
    """(specs, module types or None, tied keys: alias → key) of a checkpoint's header or a plugin's model."""
    from .plan import parse_model_args

    name = model_name(spec)
    if name is None:
        if model_args:
            raise BadInputError(f"{option} only applies to a model:NAME; drop it or name a model")
        with ctx.open_reader(spec, None, **options) as reader:
            return reader.specs(), None, reader.aliases() if hasattr(reader, "aliases") else {}
    return (*ctx.model_target(name, parse_model_args(model_args)), {})


def run(args: argparse.Namespace, ctx) -> int:
    from ..suggest import suggest
    from ..suggest.ambiguous import warnings as ambiguity_warnings
    from ..suggest.order import warning as order_warning
    from ..suggest.weak import warning as weak_warning

    if args.output:  # before any reading: a checkpoint is never replaced by its rules, a folder never written
        from ..io.atomic import check_destinations

        check_destinations([Path(args.output)], [Path(s) for s in (args.source, args.target) if model_name(s) is None],
                           force=args.force)
    options = reader_options(args)
    source = load_side(args.source, args.source_model_arg, "--source-model-arg", ctx, options)
    target = load_side(args.target, args.model_arg, "--model-arg", ctx, options)
    ties = ctx.tied_targets if model_name(args.target) is not None else ()  # the target's: built last
    result = suggest(source[0], target[0], source_types=source[1], target_types=target[1],
                     source_name=args.source, target_name=args.target, name=args.name, source_aliases=source[2],
                     target_ties=ties)
    as_json = bool(args.output) and Path(args.output).suffix.lower() == ".json"
    if args.output:
        _write(Path(args.output), result.json_text if as_json else result.text)
    if args.json:
        ctx.print_json(result.to_dict())
    elif args.output:
        s = result.summary()
        ctx.print(f"wrote {args.output}: {s['rules']} rules; {s['pairs']} of {s['source_keys']} source keys paired, "
                  f"{s['skipped']} skipped; {s['new']} of {s['target_keys']} target keys new"
                  + (f", {s['tied_filled']} filled through a tie" if s["tied_filled"] else ""))
        if as_json:
            ctx.print("  (JSON has no comments: the evidence for each rule is in the YAML form, -o FILE.yaml, "
                      "or in --json)")
    else:
        ctx.out.write(result.text)
    listed_in = ("the JSON report's `ambiguous`" if args.json else
                 "--json's `ambiguous` and the AMBIGUOUS comments of -o FILE.yaml" if as_json else
                 f"the AMBIGUOUS comments of {args.output}" if args.output else "the rules' AMBIGUOUS comments")
    for line in ambiguity_warnings(result.pairing.ambiguous, listed_in):
        ctx.warn(line)
    if result.pairing.order_only:
        ctx.warn(order_warning(result.pairing.order_only))
    if result.pairing.weak_names:
        ctx.warn(weak_warning(result.pairing.weak_names))
    for line in result.pairing.limited:  # too many alike to compare every pair: the result may miss some
        ctx.warn(f"suggest: {line}")
    return 0


def _write(path: Path, text: str) -> None:
    """Through a temporary in the same folder: an interrupted write leaves no half file."""
    from ..io.atomic import AtomicFiles

    try:
        with AtomicFiles() as files:
            fd = files.create(path)
            os.write(fd, text.encode("utf-8"))
            files.commit()
    except OSError as exc:  # permissions, a read-only folder, a full disk: nothing was put in place
        where = f" ({exc.filename})" if exc.filename else ""
        raise BadInputError(f"{path}: writing failed: {exc.strerror or exc}{where}; nothing was written") from None
