"""Safe output: write to temporary files beside the destinations, fsync, then rename into place.

Nothing appears at a destination until :meth:`AtomicFiles.commit`; on any exception,
``KeyboardInterrupt`` included, the temporary files are removed.

Signals are the application's: this library installs no handler. SIGTERM's default action
ends the process without running ``finally`` blocks, so a program that wants the cleanup
on SIGTERM installs its own handler that raises (:class:`Terminated` is there for that; the
``mapper`` command line does exactly this while a command runs).

Several files (shards, then their index) are renamed one after the other: a reader never
sees an index before its shards. If a rename itself fails, the files already renamed are
removed again when nothing stood at their place before.
"""
from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import OutputExistsError

TEMP_SUFFIX = ".mapper-tmp"


class Terminated(KeyboardInterrupt):
    """A termination signal arrived; raise it from your own SIGTERM handler so that cleanup runs.

    A ``KeyboardInterrupt`` subclass, so code that already stops on Ctrl-C stops on it too.
    The library never raises it by itself.
    """

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file (symlinks, hard links, ``..`` resolved)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_destinations(destinations: Sequence[Path], sources: Iterable[Path], force: bool = False) -> None:
    """Refuse a destination that is one of the source files (even with ``force``), a directory,
    or an existing file without ``force``. Raises :class:`OutputExistsError`."""
    sources = [Path(s) for s in sources]
    for dest in destinations:
        for src in sources:
            if _same_file(dest, src):
                raise OutputExistsError(
                    f"{dest}: is the source file {src} (or a shard of it); write the output to another path"
                )
        if dest.is_dir():
            raise OutputExistsError(f"{dest}: is a directory; name an output file")
        if (dest.exists() or dest.is_symlink()) and not force:
            raise OutputExistsError(f"{dest}: already exists; pass --force (Python: force=True) to replace it")
        if not dest.parent.is_dir():
            raise OutputExistsError(f"{dest}: the folder {dest.parent} does not exist; create it first")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename durable. Some platforms cannot open a folder; then there is nothing to do."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFiles:
    """A set of output files written through temporaries; use as a context manager.

    ``create(dest)`` returns a raw file descriptor opened for reading and writing;
    ``commit()`` fsyncs and renames every file in creation order. Leaving the ``with``
    block without ``commit()`` (any exception, Ctrl-C) removes every temporary.
    """

    def __init__(self) -> None:
        self._files: list[tuple[Path, Path, int | None, bool]] = []  # dest, temp, fd, dest existed
        self.committed = False

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> "AtomicFiles":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self.discard()

    # -- files -------------------------------------------------------------------------
    @property
    def temp_paths(self) -> tuple[Path, ...]:
        return tuple(temp for _, temp, _, _ in self._files)

    def create(self, dest: str | Path) -> int:
        """A new temporary file in ``dest``'s folder; returns its descriptor (read/write)."""
        dest = Path(dest)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TEMP_SUFFIX, dir=dest.parent)
        existed = dest.exists() or dest.is_symlink()
        self._files.append((dest, Path(name), fd, existed))
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like any new file
        except (OSError, AttributeError):
            pass
        return fd

    def temp_of(self, dest: str | Path) -> Path:
        """The temporary path standing in for ``dest`` until commit."""
        dest = Path(dest)
        for d, temp, _, _ in self._files:
            if d == dest:
                return temp
        raise KeyError(f"{dest} was not created through this AtomicFiles")

    def commit(self) -> None:
        """fsync every file, rename each onto its destination in creation order, fsync the folders."""
        for i, (dest, temp, fd, existed) in enumerate(self._files):
            if fd is not None:
                os.fsync(fd)
                os.close(fd)
                self._files[i] = (dest, temp, None, existed)
        done: list[tuple[Path, bool]] = []
        try:
            for dest, temp, _, existed in self._files:
                os.replace(temp, dest)
                done.append((dest, existed))
        except BaseException:
            for dest, existed in done:  # undo what we can: files that did not exist before
                if not existed:
                    _unlink(dest)
            raise
        for folder in {dest.parent for dest, _, _, _ in self._files}:
            fsync_dir(folder)
        self.committed = True

    def discard(self) -> None:
        """Close and remove every temporary file (idempotent)."""
        for i, (dest, temp, fd, existed) in enumerate(self._files):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            _unlink(temp)
            self._files[i] = (dest, temp, None, existed)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
