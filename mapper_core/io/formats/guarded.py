"""The host's side of the reader contract for a plugin's format: check what the plugin hands back.

A plugin's ``Format`` is wrapped by :func:`guard_format` when the host collects it, so every
caller (the CLI, ``open_checkpoint``, convert, inspect) gets a :class:`GuardedReader`: the
context manager works whether or not the plugin's reader has one, metadata values are text
the same way for inspect and convert, numpy arrays become torch tensors, and a missing
method, a wrong type, a raised exception or a tensor that contradicts its own spec becomes a
:class:`~mapper_core.errors.PluginError` naming the plugin and its reader (the original
exception is its ``__cause__``, which ``--debug`` prints).
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from ...errors import (CheckpointWarning, MapperError, MissingExtraError, PluginError, TORCH_EXTRA, called_exit,
                       torch_available)
from ...specs import DTYPE_SIZES, TensorSpec
from .base import Format

REQUIRED = ("specs", "get_tensor")


def guard_format(fmt: Format, plugin: str) -> Format:
    """``fmt`` with ``open`` and ``sniff`` checked, and readers wrapped, on behalf of ``plugin``."""
    label = f"plugin '{plugin}', format '{fmt.name}'"

    def open_guarded(path: Path, **options: Any) -> GuardedReader:
        reader = _call(label, "open()", fmt.open, path, **options)
        where = f"{label}: open() returned {type(reader).__name__}"
        missing = [m for m in REQUIRED if not callable(getattr(reader, m, None))]
        if missing:
            raise PluginError(f"{where}, which has no {' or '.join(m + '()' for m in missing)}; a reader needs "
                              "specs() and get_tensor(key) (see docs/plugins.md, 'The reader contract')")
        return GuardedReader(reader, label, Path(path))

    sniff = fmt.sniff
    if sniff is not None:
        def sniff_guarded(path: Path) -> bool:
            return bool(_call(label, "sniff()", sniff, path))
    return dataclasses.replace(fmt, open=open_guarded, sniff=sniff_guarded if sniff is not None else None)


def _call(label: str, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call plugin code; a MapperError it raises is a deliberate message and passes unchanged."""
    try:
        return function(*args, **kwargs)
    except MapperError:
        raise
    except Exception as exc:  # someone else's code: name it, keep the traceback for --debug
        raise PluginError(f"{label}: {what} failed: {type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:  # the plugin's failure, not the command's exit; KeyboardInterrupt still stops us
        raise PluginError(f"{label}: {what} {called_exit(exc)}") from exc


class GuardedReader:
    """A plugin's reader, held to the reader contract. Other attributes pass through."""

    def __init__(self, reader: Any, label: str, path: Path):
        self._reader = reader
        self._label = f"{label}, reader {type(reader).__qualname__}"
        self.path = Path(getattr(reader, "path", path))
        self._specs: dict[str, TensorSpec] | None = None
        self._metadata: dict[str, str] | None = None

    def __getattr__(self, name: str) -> Any:  # optional extras (non_tensors, ...) of the plugin's reader
        if name.startswith("_") or name == "locate":  # byte ranges are trusted from built-in readers only
            raise AttributeError(name)
        return getattr(self._reader, name)

    def specs(self) -> dict[str, TensorSpec]:
        if self._specs is None:
            found = _call(self._label, "specs()", self._reader.specs)
            if not isinstance(found, Mapping):
                raise PluginError(f"{self._label}: specs() returned {type(found).__name__}; expected a mapping "
                                  "of tensor name → TensorSpec")
            for key, spec in found.items():
                _check_spec(self._label, key, spec)
            self._specs = dict(found)
        return dict(self._specs)

    def metadata(self) -> dict[str, str]:
        """Text values as they are; numbers, booleans, None, lists and mappings as JSON text."""
        if self._metadata is None:
            method = getattr(self._reader, "metadata", None)
            found = _call(self._label, "metadata()", method) if callable(method) else {}
            if not isinstance(found, Mapping):
                raise PluginError(f"{self._label}: metadata() returned {type(found).__name__}; expected a mapping "
                                  "of str → str")
            self._metadata = {self._meta_key(k): self._meta_value(k, v) for k, v in found.items()}
        return dict(self._metadata)

    def _meta_key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise PluginError(f"{self._label}: metadata() has the key {key!r} ({type(key).__name__}); keys must be str")
        return key

    def _meta_value(self, key: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        try:
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise PluginError(f"{self._label}: metadata() value of '{key}' is {type(value).__name__}; expected str "
                              "(or a number, bool, None, list or mapping, stored as JSON text)") from None

    def get_tensor(self, key: str) -> Any:
        spec = self.specs().get(key)
        value = _call(self._label, f"get_tensor({key!r})", self._reader.get_tensor, key)
        tensor = _as_torch(self._label, key, value)
        from ..torch_dtypes import dtype_name

        got = TensorSpec(dtype_name(tensor.dtype, key, self._label), tuple(tensor.shape))
        if spec is not None and got != spec:
            raise PluginError(
                f"{self._label}: get_tensor({key!r}) returned {got.dtype} {list(got.shape)} but its specs() says "
                f"{spec.dtype} {list(spec.shape)}; the reader must return what its specs() announce (fix the plugin)")
        return tensor

    def close(self) -> None:
        method = getattr(self._reader, "close", None)
        if callable(method):
            _call(self._label, "close()", method)

    def __enter__(self) -> "GuardedReader":
        return self

    def __exit__(self, *exc: object) -> None:
        """Close; a ``close()`` that fails is a warning, not an error: the ``with`` block's work is
        done (a converted output is already in place), or its own error is the one to report."""
        try:
            self.close()
        except MapperError as error:
            after = "after an error" if exc[0] is not None else "ignored: what was read is complete and unaffected"
            warnings.warn(CheckpointWarning(f"{error} ({after}; fix the plugin's close())"), stacklevel=2)


def _check_spec(label: str, key: Any, spec: Any) -> None:
    if not isinstance(key, str):
        raise PluginError(f"{label}: specs() has the key {key!r} ({type(key).__name__}); tensor names must be str")
    if not isinstance(spec, TensorSpec):
        raise PluginError(f"{label}: specs()['{key}'] is {type(spec).__name__}; expected "
                          "mapper_core.specs.TensorSpec(dtype, shape)")
    shape_ok = isinstance(spec.shape, tuple) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in spec.shape)
    if spec.dtype not in DTYPE_SIZES or not shape_ok:
        raise PluginError(f"{label}: specs()['{key}'] is {spec.dtype} {spec.shape!r}; expected a dtype among "
                          f"{', '.join(DTYPE_SIZES)} and a tuple of sizes >= 0")


def _as_torch(label: str, key: str, value: Any) -> Any:
    if not torch_available():
        raise MissingExtraError(f"{label}: reading tensor '{key}' needs torch; {TORCH_EXTRA}")
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_meta:
            raise PluginError(f"{label}: get_tensor({key!r}) returned a tensor on the meta device: it holds no "
                              "data; return the tensor's values (a CPU tensor or a numpy array)")
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        try:
            if not value.dtype.isnative:  # big-endian: the same values in this machine's byte order
                return torch.from_numpy(value.astype(value.dtype.newbyteorder("=")))
            # A read-only array (a memory map) is copied: torch tensors are writable.
            return torch.from_numpy(value if value.flags.writeable else value.copy())
        except TypeError as exc:
            raise PluginError(f"{label}: get_tensor({key!r}) returned a numpy array of dtype {value.dtype}, "
                              f"which torch cannot hold: {exc}") from exc
    raise PluginError(f"{label}: get_tensor({key!r}) returned {type(value).__name__}; expected a torch.Tensor "
                      "or a numpy array")
