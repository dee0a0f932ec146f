"""The ``mapper`` command line: parse, build, execute; the only place that prints and picks exit codes.

Each sub-command lives in its own module under ``mapper_core.cli`` and defines ``HELP``,
``add_arguments(parser)`` and ``run(args, ctx) -> int``. Command modules must not import
torch at module level: header-only commands have a start-up budget.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .. import __version__
from ..errors import MapperError
from .context import Context

COMMANDS = ("validate", "plan", "explain", "plugins", "rules", "inspect", "convert", "export")

EXIT_OK, EXIT_PLAN_ERRORS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mapper",
        description="Map trained weights from one model layout into another with declarative rules.",
        epilog="Exit codes: 0 clean; 1 the plan has errors; 2 bad input (unreadable file, invalid rules).",
    )
    parser.add_argument("--version", action="version", version=f"mapper-core {__version__}")
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE",
        help="import MODULE as a plugin (repeatable; adds to $MAPPER_PLUGINS)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(plugins=tuple(args.plugin))
    try:
        return int(args._run(args, ctx))
    except MapperError as exc:
        ctx.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        ctx.error("interrupted; nothing was written")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `mapper plan ... | head`
        sys.stderr.close()
        return EXIT_OK
