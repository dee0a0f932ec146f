"""The ``mapper`` executable's entry point: :func:`mapper_core.cli.main` with Ctrl-C at its edges.

A Ctrl-C can land before ``main`` has set up (while the command's modules are imported) or after
it has printed its report (while the interpreter shuts down). The first used to end in a
``KeyboardInterrupt`` traceback and exit 1 (the code for "the plan has errors"); the second killed
the process by the signal with nothing said, after a complete output had been reported. Here the
first is "interrupted; nothing was written" (130) and the second is ignored: the work is done and
said. Only the executable does this; ``main`` called from Python leaves signals as they are.
"""
from __future__ import annotations

import signal
import sys


def run() -> int:
    try:
        from .cli import EXIT_INTERRUPTED, main
    except KeyboardInterrupt:  # during the imports: nothing was started
        sys.stderr.write("mapper: error: interrupted; nothing was written\n")
        return 130
    try:
        code = main()
    except KeyboardInterrupt:  # between main's own handling and here: a few instructions
        sys.stderr.write("mapper: error: interrupted\n")
        return EXIT_INTERRUPTED
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # reported and done: a late Ctrl-C changes nothing
    return code


def console() -> None:
    sys.exit(run())
