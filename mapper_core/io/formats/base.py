"""The format seam: a Reader gives specs from headers, then tensors one at a time on demand.

Formats are plain values (:class:`Format`); built-in ones are contributed through the
``mapper_formats`` hook exactly as a plugin's would be.
"""
from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Protocol, Sequence, TypeVar,
                    runtime_checkable)

from ...errors import CheckpointError, CheckpointWarning
from ...specs import TensorSpec

if TYPE_CHECKING:  # torch is imported only by readers that hand out tensors
    import torch

T = TypeVar("T", bound=tuple)


class FileRange(NamedTuple):
    """Raw tensor bytes at ``path[start:end]`` (absolute file offsets): what byte-copying readers locate.

    A named tuple, so that a million of them can be made without a Python call each (:func:`rows_of`)."""

    path: Path
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def rows_of(cls: type[T], columns: Iterable[tuple]) -> list[T]:
    """``[cls(*row) for row in columns]`` for a named tuple ``cls``, without a Python call per row."""
    return list(map(tuple.__new__, repeat(cls), columns))  # type: ignore[arg-type]


@runtime_checkable
class Reader(Protocol):
    """The reader contract: an open checkpoint, used as a context manager.

    - ``specs()`` → ``Mapping[str, TensorSpec]``: every tensor's dtype (safetensors names:
      ``F32``, ``BF16``, ...) and shape, from headers alone; it must not load tensor data.
    - ``get_tensor(key)`` → a ``torch.Tensor`` (or, from a plugin's reader, a numpy array that
      the host converts) with exactly the dtype and shape ``specs()`` announced.
    - ``metadata()`` → ``Mapping[str, str]``: free-form text pairs (``{}`` when there are none).
    - ``close()``; ``with reader:`` closes it on the way out.

    Built-in readers implement it; a plugin's reader may subclass :class:`ReaderBase`, which
    provides ``metadata()``, ``close()`` and the context manager.
    """

    path: Path

    def specs(self) -> Mapping[str, TensorSpec]: ...

    def metadata(self) -> Mapping[str, str]: ...

    def get_tensor(self, key: str) -> "torch.Tensor": ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...


class ReaderBase:
    """A base for readers: the context manager, a ``close()`` that does nothing and no metadata.

    Subclasses set ``self.path`` and implement ``specs()`` and ``get_tensor(key)``; they
    override ``close()`` when they hold a file or a memory map, and ``metadata()`` when the
    format has any.
    """

    path: Path

    def specs(self) -> Mapping[str, TensorSpec]:
        raise NotImplementedError(f"{type(self).__name__} must implement specs()")

    def get_tensor(self, key: str) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement get_tensor(key)")

    def metadata(self) -> Mapping[str, str]:
        return {}

    def close(self) -> None:
        pass

    def __enter__(self):  # noqa: ANN204 - the subclass's own type
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def non_tensors(reader: Reader) -> dict[str, str]:
    """The source's non-tensor values, key → type name (``'step': 'int'``); {} for readers without any.

    A reader may offer ``non_tensors()`` (the torch reader does); it is optional in the protocol."""
    found = getattr(reader, "non_tensors", None)
    return dict(found()) if found else {}


@dataclass(frozen=True)
class Format:
    """A checkpoint format: how to recognise it and how to open it for reading."""

    name: str
    suffixes: tuple[str, ...]
    open: Callable[..., Reader]  # open(path, **options) -> Reader
    sniff: Callable[[Path], bool] | None = None  # cheap content check; wins over suffixes
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def claims(self, path: Path) -> bool:
        name = path.name.lower()
        return any(name.endswith(s) for s in self.suffixes)


def choose_format(path: str | Path, formats: Sequence[Format], name: str | None = None) -> Format:
    """The format for ``path``: the one named, else the first whose sniff says yes, else by suffix."""
    from .sniff import not_there

    path = Path(path)
    missing = not_there(path)
    if missing is not None and (name is None or path.is_symlink()):  # a named format's reader says the rest
        raise CheckpointError(missing)
    if name is not None:
        for f in formats:
            if f.name == name:
                if path.is_dir() and not (f.sniff is not None and f.sniff(path)):
                    return _folder(path, formats, f)
                return _content_agrees(path, f)
        known = ", ".join(f.name for f in formats)
        raise CheckpointError(f"{path}: unknown format '{name}'; known formats: {known}")
    for f in formats:
        if f.sniff is not None and f.sniff(path):
            return f
    if path.is_dir():
        return _folder(path, formats)
    for f in formats:
        if f.claims(path):
            return _content_agrees(path, f)
    known = "; ".join(f"{f.name} ({', '.join(f.suffixes)})" for f in formats)
    raise CheckpointError(
        f"{path}: cannot tell the checkpoint format; known formats: {known}. Name one with --format NAME "
        "(--target-format for a --target file), or format= in Python."
    )



def _folder(path: Path, formats: Sequence[Format], only: Format | None = None) -> Format:
    """The format of the checkpoint inside the model folder ``path`` (``only``'s, when one is named),
    opening that file, with a note when the folder holds others (:mod:`.folder`)."""
    from .folder import checkpoint_in

    inner, fmt, note = checkpoint_in(path, formats, only)
    return dataclasses.replace(fmt, open=functools.partial(_open_inner, fmt.open, inner, note))


def _open_inner(open_: Callable[..., Reader], inner: Path, note: str | None, _given: Path, **options: Any) -> Reader:
    if note is not None:
        warnings.warn(note, CheckpointWarning, stacklevel=2)
    return open_(inner, **options)


def _content_agrees(path: Path, fmt: Format) -> Format:
    """``fmt``, unless its sniffer says no and the content is recognisably another format: then that
    format is named, with what to do, instead of the reader failing on bytes it cannot parse."""
    if fmt.sniff is None or not path.is_file() or fmt.sniff(path):
        return fmt
    from .sniff import advice, what_is

    kind = what_is(path)
    if kind is None:
        return fmt  # damaged, or truly unknown: the reader says what is wrong with it
    raise CheckpointError(f"{path}: is {kind}, not {fmt.name}; {advice(kind, path)}")
