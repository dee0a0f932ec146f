"""Safe output: write to temporary files beside the destinations, fsync, then rename into place.

Nothing appears at a destination until :meth:`AtomicFiles.commit`; on any exception,
``KeyboardInterrupt`` included, the temporary files are removed.

Signals are the application's: this library installs no handler. SIGTERM's default action
ends the process without running ``finally`` blocks, so a program that wants the cleanup
on SIGTERM installs its own handler that raises (:class:`Terminated` is there for that; the
``mapper`` command line does exactly this while a command runs).

Several files (shards, then their index) are renamed one after the other: a reader never
sees an index before its shards. The renames are all or nothing, as far as POSIX allows: with
``replace`` each file a rename replaces is first kept under a temporary name (a second hard
link, so the name never goes missing; a rename where the filesystem has no hard links), and
only once every rename succeeded are those removed. If one fails (or Ctrl-C lands meanwhile),
every file already renamed is taken away again and every replaced one put back; if even that
fails, :class:`CommitError` says, file by file, where things are. SIGINT and SIGTERM are held
while this runs (:func:`signals_held`); a process killed by SIGKILL mid-way cannot put things
back, and its kept-aside files are then temporaries like any other (:func:`stale_temps`).

Setting ``committed`` is the commit point. A program that must say what an interrupt left
behind runs inside :func:`mapper_core.io.commits.recording`, which lists the outputs whose
commit point has passed (the ``mapper`` command line does).

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

import errno
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import CheckpointWarning, OutputExistsError, Terminated  # Terminated lives in errors: the CLI needs it at start-up
from .commits import watch
from .rollback import CommitError, Move, commit_failure, keep_aside, signals_held, undo

__all__ = ["AtomicFiles", "CommitError", "Terminated", "check_destinations", "fsync_dir", "remove_stale",
           "signals_held", "stale_temps", "write_all"]

TEMP_SUFFIX = ".mapper-tmp"
_OWNER = re.compile(r"\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _host() -> str:
    """This machine's name as it appears in temporary names (letters, digits and '-' only)."""
    if hasattr(os, "uname"):  # gethostname(2)'s answer, without importing socket (~8 ms at start-up)
        name = os.uname().nodename
    else:
        import socket

        name = socket.gethostname()
    return re.sub(r"[^A-Za-z0-9-]", "-", name)[:32]


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
    other machines, and of unknown owners are never listed, nor is anything but a file (a folder
    named like one is no temporary of ours)."""
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
        if owner and owner["host"] == host and not _alive(int(owner["pid"])) and _is_file(dest.parent / name):
            found.append(dest.parent / name)
    return found


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def remove_stale(paths: Iterable[Path]) -> list[Path]:
    """Remove what :func:`stale_temps` listed; returns what was removed. A file that cannot be
    removed (a read-only folder, a file busy elsewhere) is named in a :class:`CheckpointWarning`
    and left; the run goes on."""
    removed = []
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            warnings.warn(CheckpointWarning(f"{path}: cannot remove this temporary file of a killed run "
                                            f"({exc.strerror or exc}); remove it yourself"), stacklevel=2)
            continue
        removed.append(Path(path))
    return removed


def _rename_noreplace(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest`` unless ``dest`` exists (FileExistsError), atomically."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dest), _RENAME_NOREPLACE) == 0:
            return
        import ctypes  # loaded by _libc() already

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
        import ctypes  # the first rename that must not replace (start-up of other commands)

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
        if dest.is_symlink() and not dest.exists() and not force:
            raise OutputExistsError(f"{dest}: is a symbolic link to {os.readlink(dest)}, which does not exist; "
                                    "remove the link, or pass --force (Python: force=True) to replace it")
        if (dest.exists() or dest.is_symlink()) and not force:
            raise OutputExistsError(f"{dest}: already exists; pass --force (Python: force=True) to replace it")
        if not dest.parent.is_dir():
            raise OutputExistsError(f"{dest}: the folder {dest.parent} does not exist; create it first")


def _temp_prefix(dest: Path) -> str:
    return f".{dest.name}.{os.getpid()}@{_host()}."


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
    ``commit()`` fsyncs and renames every file in creation order, all or none. Leaving the
    ``with`` block without ``commit()`` (any exception, Ctrl-C) removes every temporary.
    """

    def __init__(self, replace: bool = True) -> None:
        self._files: list[tuple[Path, Path, int | None]] = []  # dest, temp, fd
        self.committed = False  # set at the commit point: every rename done, nothing is undone after it
        self.replace = replace  # False: commit never replaces a file, even one that appeared meanwhile
        watch(self)  # so that a program interrupted later can tell whether this output is in place

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> "AtomicFiles":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self.discard()

    # -- files -------------------------------------------------------------------------
    @property
    def temp_paths(self) -> tuple[Path, ...]:
        return tuple(temp for _, temp, _ in self._files)

    @property
    def destinations(self) -> tuple[Path, ...]:
        return tuple(dest for dest, _, _ in self._files)

    def create(self, dest: str | Path) -> int:
        """A new temporary file in ``dest``'s folder; returns its descriptor (read/write)."""
        dest = Path(dest)
        import tempfile  # only once a write begins

        fd, name = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=TEMP_SUFFIX, dir=dest.parent)
        self._files.append((dest, Path(name), fd))
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like any new file
        except (OSError, AttributeError):
            pass
        return fd

    def temp_of(self, dest: str | Path) -> Path:
        """The temporary path standing in for ``dest`` until commit."""
        dest = Path(dest)
        for d, temp, _ in self._files:
            if d == dest:
                return temp
        raise KeyError(f"{dest} was not created through this AtomicFiles")

    def release(self) -> list[tuple[Path, Path]]:
        """fsync and close every temporary and hand them over, as (destination, temporary): they are no
        longer this object's to rename or remove (:meth:`adopt` in another, e.g. a parent process's)."""
        self._sync_and_close()
        released = [(dest, temp) for dest, temp, _ in self._files]
        self._files = []
        return released

    def adopt(self, dest: str | Path, temp: str | Path) -> None:
        """Take over a finished temporary another AtomicFiles released: renamed onto ``dest`` by
        :meth:`commit` (in the order files were created or adopted), removed by :meth:`discard`."""
        self._files.append((Path(dest), Path(temp), None))

    def _sync_and_close(self) -> None:
        for i, (dest, temp, fd) in enumerate(self._files):
            if fd is not None:
                os.fsync(fd)
                os.close(fd)
                self._files[i] = (dest, temp, None)

    def commit(self) -> None:
        """fsync every file, rename each onto its destination in creation order, fsync the folders.

        All or none: on any failure (Ctrl-C included) the files renamed so far are taken away and
        the ones they replaced put back before the exception goes on; :class:`CommitError` if
        that fails too."""
        self._sync_and_close()
        moves: list[Move] = []
        with signals_held():  # Ctrl-C waits for the last rename, or for everything to be put back
            try:
                for dest, temp, _ in self._files:
                    moves.append(move := Move(dest, temp))
                    if self.replace:
                        keep_aside(move, _temp_prefix(dest), TEMP_SUFFIX)
                    self._rename(temp, dest)
                    move.placed = True
                self.committed = True  # the commit point: from here on the new files stay
            except BaseException as exc:
                left = undo(moves)
                _fsync_dirs(m.dest for m in moves)
                if left:
                    raise CommitError(commit_failure(exc, left)) from exc
                raise
            for move in moves:  # the earlier files are no longer needed (still held: none stays behind)
                if move.kept is not None:
                    try:
                        _unlink(move.kept)
                    except OSError:  # the output is in place: a kept file left is a stale temporary, listed later
                        pass
            _fsync_dirs(dest for dest, _, _ in self._files)

    def _rename(self, temp: Path, dest: Path) -> None:
        if self.replace:
            os.replace(temp, dest)
            return
        try:
            _rename_noreplace(temp, dest)
        except FileExistsError:
            raise OutputExistsError(
                f"{dest}: appeared while the output was being written (another process wrote it); "
                "nothing was replaced. Pass --force (Python: force=True) to replace it") from None

    def discard(self) -> None:
        """Close and remove every temporary file (idempotent)."""
        for i, (dest, temp, fd) in enumerate(self._files):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            _unlink(temp)
            self._files[i] = (dest, temp, None)


def _fsync_dirs(dests: Iterable[Path]) -> None:
    for folder in {Path(d).parent for d in dests}:
        fsync_dir(folder)


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
