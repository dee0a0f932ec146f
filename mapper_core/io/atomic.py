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

Without ``replace`` (``--force``), the final step never replaces anything, even a file that
another process put there after the destinations were checked: ``renameat2`` with
``RENAME_NOREPLACE`` where the kernel and the filesystem have it, else a hard link (which
fails on an existing name) and the removal of the temporary. The loser of such a race gets
:class:`~mapper_core.errors.OutputExistsError`.

A temporary file is named ``.NAME.PID@HOST.XXXXXXXX.mapper-tmp``: a process killed with
SIGKILL cannot clean up, and its PID and host let a later run tell its leftovers
(:func:`stale_temps`) from the temporaries of a run still going.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import OutputExistsError, Terminated  # Terminated lives in errors: the CLI needs it at start-up

TEMP_SUFFIX = ".mapper-tmp"
_OWNER = re.compile(r"\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _host() -> str:
    """This machine's name as it appears in temporary names (letters, digits and '-' only)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists (another user's), or a number no process can have: leave it alone
    return True


def stale_temps(dest: str | Path) -> list[Path]:
    """Temporary files left beside ``dest`` by runs on this machine whose process is gone (SIGKILL,
    a crash, a power cut before the rename), oldest name first. Files of live processes, of
    other machines, and of unknown owners are never listed."""
    dest = Path(dest)
    found = []
    host = _host()
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return []
    prefix = f".{dest.name}"
    for name in sorted(names):
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        owner = _OWNER.fullmatch(name[len(prefix):])
        if owner and owner["host"] == host and not _alive(int(owner["pid"])):
            found.append(dest.parent / name)
    return found


def remove_stale(paths: Iterable[Path]) -> list[Path]:
    """Remove what :func:`stale_temps` listed; returns what was removed."""
    removed = []
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(Path(path))
    return removed


def _rename_noreplace(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest`` unless ``dest`` exists (FileExistsError), atomically."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dest), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(dest))
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(dest))
    # No renameat2 here (or not on this filesystem): a hard link also refuses an existing name.
    os.link(src, dest)
    os.unlink(src)


_LIBC: list = []


def _libc():
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


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

    def __init__(self, replace: bool = True) -> None:
        self._files: list[tuple[Path, Path, int | None, bool]] = []  # dest, temp, fd, dest existed
        self.committed = False
        self.replace = replace  # False: commit never replaces a file, even one that appeared meanwhile

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
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}@{_host()}.", suffix=TEMP_SUFFIX,
                                    dir=dest.parent)
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
                if self.replace:
                    os.replace(temp, dest)
                else:
                    try:
                        _rename_noreplace(temp, dest)
                    except FileExistsError:
                        raise OutputExistsError(
                            f"{dest}: appeared while the output was being written (another process wrote it); "
                            "nothing was replaced. Pass --force (Python: force=True) to replace it") from None
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


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
