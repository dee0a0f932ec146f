"""Which outputs were put in place: what a program that was interrupted needs to say what it left.

Every :class:`~mapper_core.io.atomic.AtomicFiles` made inside a :func:`recording` block (in the same
thread or task) reports itself to it; :meth:`Commits.done` then names the destinations whose commit
point has passed (every rename done). The ``mapper`` command line runs each command inside one, so
that a Ctrl-C after the last rename is reported as what it is: the output is complete. Nothing is
recorded outside such a block.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator


class Commits:
    """The outputs made while :func:`recording` was active."""

    def __init__(self) -> None:
        self._outputs: list[Any] = []

    def add(self, output: Any) -> None:
        self._outputs.append(output)

    def done(self) -> list[Path]:
        """The destinations put in place, in the order they were renamed (an index after its shards)."""
        return [dest for output in self._outputs if output.committed for dest in output.destinations]


_CURRENT: ContextVar[Commits | None] = ContextVar("mapper_core_commits", default=None)


@contextmanager
def recording() -> Iterator[Commits]:
    """Record the outputs made in this block; nested blocks record into the innermost one."""
    commits = Commits()
    token = _CURRENT.set(commits)
    try:
        yield commits
    finally:
        _CURRENT.reset(token)


def watch(output: Any) -> None:
    """Called by each new AtomicFiles: report it to the current :func:`recording` block, if any."""
    commits = _CURRENT.get()
    if commits is not None:
        commits.add(output)
