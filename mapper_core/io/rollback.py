"""All or nothing for a set of renames: keep each file a rename replaces aside, and on failure
take the new files away and put the earlier ones back (:class:`~mapper_core.io.atomic.AtomicFiles`
``commit`` uses it). Also :func:`signals_held`, which keeps SIGINT and SIGTERM out of such a step.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
from pathlib import Path
from typing import Iterator

from ..errors import BadInputError


class CommitError(BadInputError):
    """Putting the output in place failed, and putting the earlier files back failed too: the
    message says which destination holds what, and where a replaced file was kept."""


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (they are not lost) until the block ends; where threads can't mask, nothing.

    This only masks them in the calling thread: no handler is installed. A process whose other
    threads take the signal still sees its ``KeyboardInterrupt`` inside the block, so code in it
    must undo what it did on any exception anyway.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Move:
    """One destination during a commit: its new file (``temp``), the earlier file kept aside (if
    any, and whether as a second hard link, so that the destination still holds it), and whether
    the new file is in place yet. Each field is set before the step it names, so that an interrupt
    between a step and the next line still leaves a true record."""

    def __init__(self, dest: Path, temp: Path):
        self.dest, self.temp = dest, temp
        self.kept: Path | None = None
        self.linked = False
        self.placed = False

    def in_place(self) -> bool:
        return self.placed or not os.path.lexists(self.temp)  # the temporary is gone once renamed


def keep_aside(move: Move, prefix: str, suffix: str) -> None:
    """Keep the file at ``move.dest`` (if any) under a new name ``prefix``XXXXXXXX``suffix`` beside it
    until the commit is done: a second hard link, or where the filesystem has none, the file moved."""
    try:
        if stat.S_ISDIR(os.lstat(move.dest).st_mode):
            return  # the rename over it fails by itself
    except FileNotFoundError:
        return
    while True:
        move.kept, move.linked = move.dest.with_name(f"{prefix}{os.urandom(4).hex()}{suffix}"), True
        try:
            os.link(move.dest, move.kept, follow_symlinks=False)  # a symlink is kept as the link it is
            return
        except FileExistsError:
            continue
        except FileNotFoundError:  # gone meanwhile: nothing to keep
            move.kept, move.linked = None, False
            return
        except (OSError, NotImplementedError):  # no hard links here: move it aside for the moment
            if os.path.lexists(move.kept):
                continue
            move.linked = False
            os.rename(move.dest, move.kept)
            return


def undo(moves: list[Move]) -> list[tuple[Move, OSError]]:
    """Put every destination back as it was before the commit, last first; returns what could not be."""
    left = []
    for move in reversed(moves):
        while True:
            try:
                placed = move.in_place()
                if move.kept is not None and (placed or not move.linked):
                    os.replace(move.kept, move.dest)  # the earlier file back at its name
                elif move.kept is not None:
                    os.unlink(move.kept)  # a second link: the destination still holds the earlier file
                elif placed:
                    os.unlink(move.dest)  # nothing stood there before
                break
            except FileNotFoundError:  # nothing to undo (not done, or done already before an interrupt)
                break
            except KeyboardInterrupt:  # a second Ctrl-C taken by another thread: finish putting back first
                continue
            except OSError as exc:
                left.append((move, exc))
                break
    return left


def commit_failure(exc: BaseException, left: list[tuple[Move, OSError]]) -> str:
    """What a failed commit left where, when putting it back failed too."""
    why = "was interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed ({exc})"
    states = []
    for move, err in left:
        reason = err.strerror or str(err)
        if move.kept is not None and move.linked and not move.in_place():
            states.append(f"{move.dest} is as it was, but a second link to it at {move.kept} could not be removed "
                          f"({reason}): delete that")
        elif move.kept is not None:
            now = "holds the new file" if move.in_place() else "is missing"
            states.append(f"{move.dest} {now}; the file it had before is at {move.kept} and could not be moved back "
                          f"({reason}): move it back by hand")
        else:
            states.append(f"{move.dest} holds the new file, which could not be removed ({reason})")
    return (f"putting the output in place {why}, and the earlier files could not all be put back: "
            + "; ".join(states) + ". Every other destination is as it was before")
