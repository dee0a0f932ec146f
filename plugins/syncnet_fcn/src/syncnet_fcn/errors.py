"""The plugin's own error for bad input, and how the sub-commands turn errors into exit codes."""
from __future__ import annotations

import sys
from typing import Any, Callable

from mapper_core.errors import MapperError


class InputError(ValueError):
    """Bad input to a sub-command (a file, a folder, an option); the message says what to do."""

    exit_code = 2


def run_command(prog: str, run: Callable[[Any], int], args: Any) -> int:
    """``run(args)``, with every expected failure printed as one line and exit code 2:
    bad input, a mapper-core error, a missing optional package (the message names the extra)."""
    try:
        return run(args)
    except (InputError, MapperError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
