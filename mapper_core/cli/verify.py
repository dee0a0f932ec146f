"""mapper verify --rules R --source CKPT --source-model model:A --target-model model:B --input ...:
prove a mapping by comparing the activations of the modules it pairs."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import BadInputError
from .options import add_json, add_reader, add_rules, reader_options
from .suggest import add_model_args

HELP = "prove a mapping: load both models, feed the same inputs, compare each paired module's output"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_rules(p, required=True)
    p.add_argument("--source", required=True, metavar="CKPT", help="the checkpoint, in the source model's layout")
    p.add_argument("--source-model", required=True, metavar="model:A", help="the model CKPT was saved from")
    p.add_argument("--target-model", required=True, metavar="model:B", help="the model the rules map into")
    add_model_args(p, "the target model", "the source model")
    p.add_argument("--input", action="append", default=[], metavar="SHAPE_OR_FILE",
                   help="an input: a shape such as 2x3x32x32 (random, fixed seed; :float16 etc. for a dtype; "
                        ":int64:HIGH for token ids below HIGH) "
                        "or a file whose tensors are inputs in key order (repeatable, in argument order)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the random inputs and for building the models (default 0)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: torch.testing.assert_close's for the dtype)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: as --rtol)")
    add_reader(p)
    add_json(p, "the comparison")


_SEEDS = (-(1 << 63), (1 << 64) - 1)  # torch.manual_seed's range


def _model(spec: str, option: str) -> str:
    if not spec.startswith("model:") or len(spec) == len("model:"):
        raise BadInputError(f"{option} {spec!r}: expected model:NAME for a model a plugin contributes "
                            "(`mapper plugins` lists them)")
    return spec[len("model:"):]


def _natural(key: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def run(args: argparse.Namespace, ctx) -> int:
    from ..activations import make_inputs, parse_input, render_text, verify
    from ..activations.compare import run_model
    from .plan import parse_model_args

    if not args.input:
        raise BadInputError("verify needs inputs: --input SHAPE (e.g. --input 2x3x32x32) or --input FILE, "
                            "once per argument the models take")
    for name in ("rtol", "atol"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            raise BadInputError(f"--{name} {value}: expected a number ≥ 0")
    if not _SEEDS[0] <= args.seed <= _SEEDS[1]:
        raise BadInputError(f"--seed {args.seed}: expected an integer from {_SEEDS[0]} to {_SEEDS[1]} "
                            "(what torch's random generator takes)")
    specs_in = [parse_input(text, lambda t: Path(t).is_file()) for text in args.input]
    ruleset = ctx.load_rules(args.rules)
    options = reader_options(args)
    import torch

    torch.manual_seed(args.seed)  # new layers start the same way every run: the report is repeatable
    source_model, source_factory = ctx.build_model(_model(args.source_model, "--source-model"),
                                                   parse_model_args(args.source_model_arg))
    target_model, target_factory = ctx.build_model(_model(args.target_model, "--target-model"),
                                                   parse_model_args(args.model_arg))
    source_model.eval()
    target_model.eval()

    def read_file(path: str):
        with ctx.open_reader(path, None, **options) as reader:
            return [reader.get_tensor(k) for k in sorted(reader.specs(), key=_natural)]

    inputs = make_inputs(specs_in, read_file, seed=args.seed)
    with ctx.open_reader(args.source, None, **options) as reader:
        result = verify(ruleset, reader, reader.specs(), source_model, target_model, inputs,
                        run_source=source_factory.input_adapter or run_model,
                        run_target=target_factory.input_adapter or run_model,
                        rtol=args.rtol, atol=args.atol, origin=args.source,
                        names=(args.source_model, args.target_model),
                        input_names=[f"{t} (seed {args.seed})" if s.path is None else t
                                     for t, s in zip(args.input, specs_in)])
    if args.json:
        ctx.print_json({"rules": ruleset.name, "source": args.source, "source_model": args.source_model,
                        "target_model": args.target_model, **result.to_dict()})
    else:
        ctx.print(render_text(result, f"verify: rules '{ruleset.name}', {args.source} ({args.source_model}) "
                                      f"-> {args.target_model}"))
    return 0 if result.passed else 1
