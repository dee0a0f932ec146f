"""The ``mapper`` command line: parse, build, execute; the only place that prints and picks exit codes.

Each sub-command lives in its own module under ``mapper_core.cli`` and defines ``HELP``,
``add_arguments(parser)`` and ``run(args, ctx) -> int``; options that several commands have
come from one function per group in ``options`` (one grammar), and convert and export write
through ``write``. Command modules must not import torch at module level: header-only
commands have a start-up budget.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..gc_pause import gc_paused
from ..errors import MapperError, Terminated
from ..io.commits import Commits, recording
from .context import Context, report_stream

COMMANDS = ("validate", "plan", "explain", "plugins", "rules", "inspect", "convert", "export", "suggest", "verify")
HEADER_ONLY = frozenset({"validate", "plan", "explain", "inspect"})  # the cycle collector paused while they run

EXIT_OK, EXIT_PLAN_ERRORS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a killed process
DEBUG_ENV = "MAPPER_DEBUG"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, every command but that one is a bare name (the
    parser for one command line: the others' modules and options cost start-up time)."""
    parser = argparse.ArgumentParser(
        prog="mapper",
        description="Map trained weights from one model layout into another with declarative rules.",
        epilog="Exit codes: 0 clean; 1 the plan has errors; 2 bad input (unreadable file, invalid rules).",
        allow_abbrev=False,  # '--source-model' must not pass for '--source-model-arg': options are spelt out
    )
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE",
        help="import MODULE as a plugin (repeatable; adds to $MAPPER_PLUGINS)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=None,
        help=f"print a failing plugin's traceback (also ${DEBUG_ENV}=1)",
    )
    parser.add_argument("--version", action="version", version=f"mapper-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, add_help=False, allow_abbrev=False)  # never parsed: the command line names `only`
            continue
        module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, allow_abbrev=False)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _command_parser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    """The parser of ``command`` (its own usage line and options), else the top-level one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def refuse_unknown(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> None:
    """argparse's 'unrecognized arguments' from the command's own parser (its usage line), with the
    option meant where one is close: options are never abbreviated, so '--source-model' is not
    taken for '--source-model-arg'."""
    import difflib

    known = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    hints = []
    for word in unknown:
        option = word.split("=", 1)[0]
        if option.startswith("--") and option not in known:
            close = difflib.get_close_matches(option, known, n=1, cutoff=0.75)
            longer = [o for o in known if o.startswith(option)]
            meant = list(dict.fromkeys(longer + close))[:3]
            if meant:
                hints.append(f"{option}: did you mean {' or '.join(meant)}? (options are not abbreviated)")
    parser.error(f"unrecognized arguments: {' '.join(unknown)}" + "".join(f"; {h}" for h in hints))


def main(argv: Sequence[str] | None = None, *, ctx: Context | None = None, defaults: dict | None = None) -> int:
    """Run one command. ``ctx`` (its streams) and ``defaults`` (extra attributes of the parsed
    arguments) are for callers that embed the command line, e.g. ``mapper_core.dist``."""
    parser = build_parser(command_of(sys.argv[1:] if argv is None else argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        refuse_unknown(_command_parser(parser, getattr(args, "command", None)), unknown)
    vars(args).update(defaults or {})
    debug = args.debug if args.debug is not None else os.environ.get(DEBUG_ENV, "") not in ("", "0")
    # Plugin code runs in this process: what it writes to file descriptor 1 goes to stderr while the
    # command runs (report_stream), so `--json` output stays one JSON document.
    with report_stream(ctx.out if ctx else None) as out:
        ctx = Context(plugins=tuple(args.plugin), out=out, err=ctx.err if ctx else None,
                      json_indent=getattr(args, "indent", None), debug=debug)
        return _execute(args, ctx)


def _execute(args: argparse.Namespace, ctx: Context) -> int:
    """Run the parsed command; its errors, a stop (SIGTERM, Ctrl-C) and a closed pipe become exit codes."""
    # The process is the command line's, not the library's: only here does SIGTERM (kill, a
    # scheduler's stop) become an exception, so an unfinished write removes its temporaries.
    def terminated(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        raise Terminated(signum)

    owns_signals = threading.current_thread() is threading.main_thread()  # handlers: main thread only
    previous = signal.signal(signal.SIGTERM, terminated) if owns_signals else None
    commits = Commits()
    # A header-only command builds its plan or report from hundreds of thousands of small objects
    # in one go and exits; the cycle collector would walk them all again once make_plan lets it run
    # (0.04 s per 100,000 keys) for garbage such data never holds. The state is restored on exit.
    header_only = args._run.__module__.rpartition(".")[2] in HEADER_ONLY
    try:
        # Our output goes through ctx.out; whatever else writes to stdout while the command runs is
        # code not ours (a plugin's import, a model factory, a reader, a transform): it goes to
        # stderr, so that `--json` output stays one JSON document and a pipe gets only the report.
        with recording() as commits, gc_paused() if header_only else nullcontext(), redirect_stdout(ctx.err), \
                ctx.command_warnings():
            code = int(args._run(args, ctx))
        ctx.out.flush()  # here, so that a reader gone away (`| head -1`) is the BrokenPipeError below
        return code
    except MapperError as exc:
        ctx.error(str(exc))
        if exc.__cause__ is not None:  # a plugin's own exception, kept for --debug
            ctx.traceback(exc.__cause__)
        return exc.exit_code
    except Terminated:
        ctx.error("terminated; " + _left_behind(args, commits.done()))
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        ctx.error("interrupted; " + _left_behind(args, commits.done()))
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `mapper plan ... | head`
        sys.stderr.close()
        return EXIT_OK
    finally:
        if owns_signals:  # None: a handler set outside Python, which cannot be put back; use the default
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, where that is plain to see: the first word, after only
    ``--debug`` and ``--plugin MODULE``. None (build every command) for anything else before it,
    such as ``--help``, an abbreviated option, or no command at all."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--debug" or word.startswith("--plugin="):
            i += 1
        elif word == "--plugin":
            i += 2
        else:
            return word if word in COMMANDS else None
    return None


def _left_behind(args: argparse.Namespace, done: list[Path]) -> str:
    """What an interrupted command leaves: its output complete (the stop came after the last rename),
    nothing, or a --workers run's finished, recorded shards."""
    if done:
        from ..io.shard_manifest import manifest_path

        last = done[-1]  # the index comes after its shards
        more = len(done) - 1
        files = f" (and {more} more file{'s' if more > 1 else ''})" if more else ""
        said = f"the output was already complete: {last} is in place{files}; only the report after it did not run"
        said += _verified(args)
        manifest = manifest_path(last)
        if manifest.exists():  # a --workers run stopped between its index and the manifest's removal
            said += (f". The resume manifest {manifest} was left behind: delete it, or rerun the same command "
                     "(it finds every shard finished and only puts the index in place again)")
        return said
    if getattr(args, "workers", 1) > 1:
        if not _has_manifest(getattr(args, "destination", None)):
            return "no shard was finished yet, so nothing was written: rerun the same command to start again"
        return ("no file was left half-written; shards already finished stay in place, recorded in the manifest: "
                "rerun the same command to write only the rest")
    return "nothing was written"


def _verified(args: argparse.Namespace) -> str:
    """What --verify had done by the last rename: the report's "verified N tensors" line did not run, the check did."""
    if not getattr(args, "verify", False):
        return ""
    if getattr(args, "workers", 1) > 1 or getattr(args, "executor", None) is not None:
        return (". Each shard this run wrote was verified bit for bit before its rename (shards an earlier run "
                "finished are not checked again)")
    return ". It was verified bit for bit against the source before it was put in place"


def _has_manifest(destination: str | None) -> bool:
    """Whether a --workers run's resume manifest is beside DST (none: no shard was finished yet)."""
    from ..io.shard_manifest import MANIFEST_SUFFIX

    if not destination:
        return False
    folder = Path(destination) if Path(destination).is_dir() else Path(destination).parent
    return any(folder.glob(f"*{MANIFEST_SUFFIX}"))
