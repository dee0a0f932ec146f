"""Typed exceptions. The library raises these; only the CLI prints them and picks exit codes.

Exit codes (see README): 0 clean, 1 the plan has errors, 2 bad input.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass


class MapperError(Exception):
    """Base class of every error mapper-core raises on purpose."""

    exit_code = 2


class BadInputError(MapperError):
    """An input file (rules, checkpoint, spec) cannot be used. Exit code 2."""


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file, located as precisely as we can."""

    file: str
    line: int | None
    path: str  # JSON path such as ``$.rules[2].target``
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}"


class RulesError(BadInputError):
    """A rules file is unreadable or invalid; carries every problem found, not only the first.

    The message lists the first :attr:`SHOWN` problems; :attr:`problems` holds them all.
    """

    SHOWN = 100  # a file with 40,000 problems has one mistake repeated; a screenful shows it

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = [str(p) for p in self.problems[:self.SHOWN]]
        if count > self.SHOWN:
            lines.append(f"... and {count - self.SHOWN:,} more problems (`mapper validate --json` lists every one)")
        super().__init__(f"{count:,} problem{'s' if count != 1 else ''} in rules:\n" + "\n".join(lines))


class CheckpointError(BadInputError):
    """A checkpoint or spec file is unreadable, malformed, or refused as unsafe."""


class CheckpointWarning(UserWarning):
    """What a reader wants the user to know about a checkpoint it read (a plugin's reader warns with it:
    ``warnings.warn(CheckpointWarning(f"{path}: ..."))``); the CLI shows it as ``mapper: warning: ...``."""


class UnsafeCheckpointError(CheckpointError):
    """Loading the checkpoint would need unpickling code that ``weights_only`` refuses."""


class ExpansionError(CheckpointError):
    """A checkpoint would grow far past its own size in memory or output (a memory bomb, or a huge
    repeated view); refused unless the caller allows it (``allow_expansion=True``, ``--allow-expansion``)."""


class ArgumentTypeError(BadInputError, TypeError):
    """A public function was handed an argument of the wrong kind (a path where a RuleSet is expected,
    a module where specs are); the message names the function, the argument, what was expected and
    how to get it. A TypeError too, as Python's own would be."""


class OutputExistsError(BadInputError):
    """The destination exists (and ``force`` was not given) or is the source itself."""


class PluginError(BadInputError):
    """A plugin failed to load, or two plugins contribute the same name."""


def called_exit(exc: SystemExit, when: str = "") -> str:
    """How an error message says that plugin code raised ``SystemExit`` (``when``: e.g. "while
    being built"): a PluginError, that code's failure, not the command's own exit."""
    code = "" if exc.code is None else repr(exc.code)
    return (f"called sys.exit({code}){' ' + when if when else ''}: plugin code must raise an exception to fail, "
            "not end the process")


def json_problem(exc: ValueError) -> str:
    """What is wrong with a JSON text, from the parser's error, in words for the user: a number too
    long for Python to convert is said as such, without Python's advice to raise a limit the user
    cannot reach from the command line."""
    text = str(exc)
    if "integer string conversion" in text:
        digits = text.rpartition("value has ")[2].partition(" digits")[0]
        count = f"of {int(digits):,} digits" if digits.isdigit() else "of thousands of digits"
        return (f"it holds a number {count}; a checkpoint's numbers (shapes, byte offsets, sizes) have at most "
                "20, so the file is damaged or hostile")
    return text


class Terminated(KeyboardInterrupt):
    """A termination signal arrived; raise it from your own SIGTERM handler so that cleanup runs.

    A ``KeyboardInterrupt`` subclass, so code that already stops on Ctrl-C stops on it too.
    The library never raises it by itself.
    """

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


class PlanError(MapperError):
    """The plan has errors (collisions, shape mismatches under ``error``). Exit code 1."""

    exit_code = 1

    def __init__(self, message: str, plan: object | None = None):
        super().__init__(message)
        self.plan = plan


class VerifyError(MapperError):
    """``--verify`` found an output tensor that differs from its source. Exit code 1; nothing is written."""

    exit_code = 1


class StepError(ValueError):
    """A transform step cannot be applied to a tensor spec (e.g. reshape to another element count).

    Raise it from a plugin transform's ``spec()``: the plan then reports a shape problem for
    that key, naming the rule and the step, instead of failing.
    """


class NotInvertible(ValueError):
    """A transform step has no exact inverse; the message says why."""


TORCH_EXTRA = "pip install 'mapper-core[torch]' (on a CPU-only machine, install torch's CPU wheel first)"


class MissingExtraError(BadInputError):
    """The input needs an optional dependency that is not installed; the message names the extra.

    ``pip install mapper-core`` is the header-only tool; torch checkpoints, transforms that
    change bytes, applying plans to modules and fine-tuning need ``mapper-core[torch]``.
    """


def torch_available() -> bool:
    """True when torch can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None
