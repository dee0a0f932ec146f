"""Loading a torch pickle, and saying why one cannot be loaded: refused, damaged, or needing code.

``torch.load(weights_only=True)`` always; ``trust_pickle=True`` loads with ``weights_only=False``
and warns with :class:`TrustPickleWarning`. What a refusal or failure says is told by the file
(its pickle parsed statically, its globals listed by torch's static scan), not by torch's
wording: a whole pickled ``nn.Module`` says so and how to go on; under ``trust_pickle`` a class
from the saving script's ``__main__``, or a package that is not installed, is named with what
to do.
"""
from __future__ import annotations

import importlib.util
import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, CheckpointWarning, UnsafeCheckpointError
from .torch_archive import Archive, ExpansionBudget, check_archive, expansion_limit

# Read from torch's message for the legacy (non-zip) format only: no public function lists a
# legacy file's globals (get_unsafe_globals_in_checkpoint reads zip archives) and the error
# carries the name in no attribute. If the wording changes, the refusal says torch's reason.
_LEGACY_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_LEGACY_PICKLES = 4  # magic number, protocol version, system info, then the object (storages follow)
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # pickled torch MAGIC_NUMBER


class TrustPickleWarning(CheckpointWarning):
    """A checkpoint was loaded with full unpickling (``trust_pickle=True``): it could have run code."""


class PickledModuleWarning(CheckpointWarning):
    """The file held a whole pickled ``nn.Module``; its ``state_dict()`` was read instead."""


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


INDEX_SUFFIXES = (".bin.index.json", ".pt.index.json", ".pth.index.json")  # a sharded checkpoint's index


def sniff_torch(path: Path) -> bool:
    """A torch zip archive (holds ``*/data.pkl``), a legacy torch pickle (pickled magic number), or the
    index of a sharded one by its name (``pytorch_model.bin.index.json``: :mod:`.torch_shards`)."""
    if path.name.lower().endswith(INDEX_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(path) as zf:
                return any(n.endswith("/data.pkl") or n == "data.pkl" for n in zf.namelist())
        return head[:1] == b"\x80" and head[2:14] == _LEGACY_MAGIC
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError, EOFError):  # a damaged zip directory
        return False


def _offending_globals(path: Path, reason: str, is_zip: bool) -> list[str]:
    """Every global weights_only refuses (zip: torch's static scan of the pickle, nothing runs);
    for a legacy file the one its refusal names."""
    if is_zip:
        import torch.serialization

        try:
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # its scanner declining an opcode must not hide the refusal itself
            return []
    found = _LEGACY_GLOBAL_RE.search(reason)
    return [found.group(1)] if found else []


def _pickle_is_well_formed(path: Path, is_zip: bool) -> bool:
    """Whether the checkpoint's pickle parses, opcode by opcode (the standard library's static
    reader: nothing is imported or run). weights_only failing on a well-formed pickle is a
    refusal of what it holds, not damage."""
    def parse(stream: Any, count: int) -> None:
        for _ in range(count):  # pickles one after the other; each walk stops after its STOP
            for _ in pickletools.genops(stream):
                pass

    try:
        if is_zip:
            with zipfile.ZipFile(path) as zf:
                name = next(n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
                parse(io.BytesIO(zf.read(name)), 1)
        else:
            with open(path, "rb") as fh:
                parse(fh, _LEGACY_PICKLES)
    except Exception:  # a bad opcode, a truncated argument, a damaged archive: all mean damage
        return False
    return True


def _torch_reason(exc: Exception) -> str:
    """The unpickler's own words. torch re-raises a weights_only failure with a long preamble and
    keeps the unpickler's error as ``__context__``; an error from plain pickle has none."""
    inner = exc.__context__ if isinstance(exc.__context__, pickle.UnpicklingError) else exc
    lines = [ln.strip() for ln in str(inner).splitlines() if ln.strip()]
    return lines[0] if lines else type(inner).__name__


def load_pickle(path: Path, trust_pickle: bool, allow_expansion: bool = False) -> tuple[Any, Archive, ExpansionBudget]:
    """The object ``torch.save`` stored in ``path``, what :func:`check_archive` learned about the file
    and the expansion budget it charged; typed errors that say what to do."""
    import torch

    if trust_pickle:  # first of all: whatever happens next, the caller has been told
        warnings.warn(
            f"{path}: loading with trust_pickle (weights_only=False): this file can run arbitrary code. "
            "Only do this for files from a source you trust.",
            TrustPickleWarning, stacklevel=3,
        )
    try:
        is_zip = _is_zip(path)
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size == 0:  # not "damaged pickle?: Ran out of input"
        raise CheckpointError(f"{path}: the file is empty (0 bytes), so it holds no checkpoint; it was probably cut "
                              "off while being saved or copied: save or copy it again")
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, ValueError, NotImplementedError, EOFError) as exc:  # a damaged zip directory
            raise CheckpointError(f"{path}: damaged zip archive ({exc}); the file is truncated or not a torch checkpoint") from None
        if any(n.endswith("constants.pkl") for n in names):
            raise CheckpointError(
                f"{path}: is a TorchScript archive, not a saved state dict; load it with torch.jit.load "
                "and torch.save(module.state_dict(), ...) first"
            )
    if str(path).endswith(".safetensors"):  # torch.load hands any such path to safetensors (case as torch checks)
        from .sniff import advice, what_is

        kind = what_is(path) or "a torch checkpoint"
        raise CheckpointError(f"{path}: is {kind}, not safetensors, despite its name; {advice(kind, path)}")
    budget = ExpansionBudget(path, size, None if allow_expansion else expansion_limit(size))
    archive = check_archive(path, budget, lenient=trust_pickle)
    try:
        # mmap keeps memory flat; a legacy file, or a zip with compressed records, is read into memory
        return (torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=not archive.in_memory),
                archive, budget)
    except pickle.UnpicklingError as exc:
        reason = _torch_reason(exc)
        if trust_pickle or not _pickle_is_well_formed(path, is_zip):
            raise CheckpointError(f"{path}: not a readable torch checkpoint (damaged pickle?): {reason}") from None
        names = _offending_globals(path, reason, is_zip)
        if names:
            what = f"the global{'s' if len(names) > 1 else ''} " + ", ".join(f"'{n}'" for n in names)
        else:
            what = f"an object weights_only refuses ({reason})"
        modules = [n for n in names if n.startswith(_NN_MODULES)]
        if modules:
            raise UnsafeCheckpointError(
                f"{path}: refused: it holds a whole pickled nn.Module (torch.save(model), with {what}), not a "
                "state dict, and unpickling it could run code. Where the model's code is, re-save it with "
                "torch.save(model.state_dict(), PATH); or, if you trust the file's source, pass --trust-pickle "
                "(Python: trust_pickle=True) and its state_dict() is read."
            ) from None
        raise UnsafeCheckpointError(
            f"{path}: refused: loading it needs {what}, and unpickling it could run code. "
            "If you trust the file's source, pass --trust-pickle (Python: trust_pickle=True)."
        ) from None
    except Exception as exc:
        if trust_pickle:
            _raise_missing_code(path, exc, is_zip)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {text}") from None


_NN_MODULES = "torch.nn.modules."
_RESAVE = "or, where the code is importable, load the file there and re-save its state dict " \
          "(torch.save(model.state_dict(), PATH))"


def _raise_missing_code(path: Path, exc: Exception, is_zip: bool) -> None:
    """Under trust_pickle: a class the pickle names that cannot be found here, said with what to do.

    The globals come from torch's static scan of the archive; a legacy file (no scan) is
    judged by the exception alone. Returns when neither explains ``exc``.
    """
    names: list[str] = []
    if is_zip:
        import torch.serialization

        try:
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # the scan declining an opcode leaves the exception to speak
            names = []
    in_main = [n for n in names if n.startswith("__main__.")]
    if in_main:
        classes = ", ".join(f"'{n[len('__main__.'):]}'" for n in in_main)
        raise CheckpointError(
            f"{path}: the pickle needs the class{'es' if len(in_main) > 1 else ''} {classes}, defined in the "
            "__main__ of the script that saved it, which cannot be found when loading elsewhere. Re-save the "
            "state dict from that script (torch.save(model.state_dict(), PATH)); or in Python, import the "
            "class from a module on PYTHONPATH, set it on __main__, and load again"
        ) from None
    missing = sorted({n.split(".")[0] for n in names if "." in n and importlib.util.find_spec(n.split(".")[0]) is None})
    if not missing and isinstance(exc, ModuleNotFoundError) and exc.name:
        missing = [exc.name.split(".")[0]]
    if missing:
        packages = ", ".join(f"'{m}'" for m in missing)
        raise CheckpointError(
            f"{path}: the pickle needs the package{'s' if len(missing) > 1 else ''} {packages}, which cannot be "
            f"imported here. Install it (e.g. pip install {missing[0]}), or put the folder holding it on "
            f"PYTHONPATH; {_RESAVE}"
        ) from None
