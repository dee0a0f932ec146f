"""torch pickle checkpoints (.pt .pth .bin .model .ckpt), zip and legacy formats.

Loading: ``torch.load(weights_only=True)`` always; zip files are memory-mapped (``mmap=True``)
so memory stays flat and ``specs()`` reads only the pickle. A file that needs more than
``weights_only`` allows is refused with :class:`UnsafeCheckpointError` naming the offending
global; ``trust_pickle=True`` loads it with ``weights_only=False`` (which runs whatever code
the file holds) and warns with :class:`TrustPickleWarning`.

Unwrap rule (override with ``unwrap``/``strip_prefix``):

1. the loaded object itself, if it is a dict whose values are all tensors;
2. else the first of ``state_dict``, ``model_state_dict``, ``model``, ``module``, ``net``
   whose value is a dict, applying the rule again inside it; other entries (``epoch``,
   ``optimizer``, ...) are ignored; a chosen dict holding non-tensor values is an error;
3. then a ``module.`` prefix (DataParallel) is stripped while every key has it.

``unwrap="a.b"`` takes ``obj["a"]["b"]`` instead (``""`` is the top level); ``strip_prefix="x."``
strips that prefix from the keys that have it (``""`` strips nothing).

Aliasing: tied weights and views share one storage. ``aliases()`` maps an alias key to its
canonical key (the first in checkpoint order) only when both are the *same view*: same
storage, storage offset, dtype, shape and stride; a writer may store the canonical once and
record the alias. ``shares_storage(key)`` lists every other key whose tensor uses the same
storage in any way (e.g. ``w`` and ``w[0]``): those must be written as separate copies.
Empty tensors never alias anything. ``get_tensor`` returns the tensor as stored (possibly
non-contiguous, possibly a memory-mapped view); callers must not modify it.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from ...errors import TORCH_EXTRA, CheckpointError, MissingExtraError, UnsafeCheckpointError, torch_available
from ...specs import TensorSpec

SUFFIXES = (".pt", ".pth", ".bin", ".model", ".ckpt")
UNWRAP_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
DP_PREFIX = "module."
# Read from torch's message for the legacy (non-zip) format only: no public function lists a
# legacy file's globals (get_unsafe_globals_in_checkpoint reads zip archives) and the error
# carries the name in no attribute. If the wording changes, the refusal says torch's reason.
_LEGACY_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_LEGACY_PICKLES = 4  # magic number, protocol version, system info, then the object (storages follow)
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # pickled torch MAGIC_NUMBER


class TrustPickleWarning(UserWarning):
    """A checkpoint was loaded with full unpickling (``trust_pickle=True``): it could have run code."""


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def sniff_torch(path: Path) -> bool:
    """A torch zip archive (holds ``*/data.pkl``) or a legacy torch pickle (pickled magic number)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(path) as zf:
                return any(n.endswith("/data.pkl") or n == "data.pkl" for n in zf.namelist())
        return head[:1] == b"\x80" and head[2:14] == _LEGACY_MAGIC
    except (OSError, zipfile.BadZipFile):
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


def _load(path: Path, trust_pickle: bool) -> Any:
    import torch

    try:
        is_zip = _is_zip(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise CheckpointError(f"{path}: damaged zip archive ({exc}); the file is truncated or not a torch checkpoint") from None
        if any(n.endswith("constants.pkl") for n in names):
            raise CheckpointError(
                f"{path}: is a TorchScript archive, not a saved state dict; load it with torch.jit.load "
                "and torch.save(module.state_dict(), ...) first"
            )
    if trust_pickle:
        warnings.warn(
            f"{path}: loading with trust_pickle (weights_only=False): this file can run arbitrary code. "
            "Only do this for files from a source you trust.",
            TrustPickleWarning, stacklevel=3,
        )
    try:
        # mmap keeps memory flat; the legacy (non-zip) format cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        reason = _torch_reason(exc)
        if trust_pickle or not _pickle_is_well_formed(path, is_zip):
            raise CheckpointError(f"{path}: not a readable torch checkpoint (damaged pickle?): {reason}") from None
        names = _offending_globals(path, reason, is_zip)
        if names:
            what = f"the global{'s' if len(names) > 1 else ''} " + ", ".join(f"'{n}'" for n in names)
        else:
            what = f"an object weights_only refuses ({reason})"
        raise UnsafeCheckpointError(
            f"{path}: refused: loading it needs {what}, and unpickling it could run code. "
            "If you trust the file's source, pass --trust-pickle (Python: trust_pickle=True)."
        ) from None
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {text}") from None


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        return "a dict with keys " + ", ".join(repr(k) for k in list(obj)[:8]) + (" ..." if len(obj) > 8 else "")
    return f"a {type(obj).__name__}"


def unwrap_state_dict(obj: Any, path: Path, unwrap: str | None = None) -> tuple[dict, str]:
    """The dict of tensors inside a loaded checkpoint and the dotted path it was found at."""
    if unwrap is not None:
        node, trail = obj, []
        for part in unwrap.split(".") if unwrap else []:
            if not isinstance(node, dict) or part not in node:
                at = ".".join(trail) or "the top level"
                raise CheckpointError(f"{path}: unwrap path '{unwrap}': no key '{part}' in {at} ({_describe(node)})")
            node, trail = node[part], trail + [part]
        _require_tensor_dict(node, path, unwrap, "--unwrap")
        return node, unwrap
    node, trail = obj, []
    while not _is_tensor_dict(node):
        step = next((k for k in UNWRAP_KEYS if isinstance(node, dict) and isinstance(node.get(k), dict)), None)
        if step is None:
            if trail:
                _require_tensor_dict(node, path, ".".join(trail), "the unwrap rule")
            raise CheckpointError(
                f"{path}: found no state dict: the file holds {_describe(obj)}, and none of "
                f"{', '.join(UNWRAP_KEYS)} is a dict of tensors; pass --unwrap KEY.PATH to choose one"
            )
        node, trail = node[step], trail + [step]
    return node, ".".join(trail)


def _require_tensor_dict(node: Any, path: Path, where: str, chosen_by: str) -> None:
    import torch

    where = f"'{where}'" if where else "the top level"
    if not isinstance(node, dict):
        raise CheckpointError(f"{path}: {where} (chosen by {chosen_by}) is {_describe(node)}, not a dict of tensors")
    bad = [k for k, v in node.items() if not isinstance(v, torch.Tensor)]
    if bad:
        kinds = ", ".join(f"'{k}' ({type(node[k]).__name__})" for k in bad[:5])
        raise CheckpointError(
            f"{path}: {where} (chosen by {chosen_by}) holds non-tensor values: {kinds}"
            f"{' ...' if len(bad) > 5 else ''}; pass --unwrap to choose the dict of tensors"
        )


def strip_key_prefix(state: dict, path: Path, strip_prefix: str | None) -> tuple[dict, str]:
    """Keys without the prefix (default rule: ``module.`` while every key has it) and the prefix removed."""
    keys = [str(k) for k in state]
    if strip_prefix is None:
        removed = ""
        while keys and all(k.startswith(removed + DP_PREFIX) for k in keys):
            removed += DP_PREFIX
    elif strip_prefix == "":
        return dict(zip(keys, state.values())), ""
    else:
        removed = strip_prefix
        if not any(k.startswith(removed) for k in keys):
            raise CheckpointError(f"{path}: no key starts with the prefix '{removed}' given to strip; e.g. '{keys[0] if keys else ''}'")
    out: dict = {}
    for k, v in zip(keys, state.values()):
        new = k[len(removed):] if k.startswith(removed) else k
        if new in out:
            raise CheckpointError(f"{path}: stripping '{removed}' makes two keys '{new}'; pass --strip-prefix ''")
        out[new] = v
    return out, removed


class TorchReader:
    """A torch checkpoint, loaded once (memory-mapped where possible) and unwrapped to its state dict."""

    def __init__(self, path: str | Path, *, trust_pickle: bool = False,
                 unwrap: str | None = None, strip_prefix: str | None = None):
        import torch

        self.path = Path(path)
        loaded = _load(self.path, trust_pickle)
        state, self.unwrap_path = unwrap_state_dict(loaded, self.path, unwrap)
        state, self.stripped_prefix = strip_key_prefix(state, self.path, strip_prefix)
        # Parameters come back as nn.Parameter; hand out plain tensors sharing the same storage
        self._tensors: dict[str, torch.Tensor] = {k: v.detach() for k, v in state.items()}
        for key, t in self._tensors.items():
            if t.layout != torch.strided:
                raise CheckpointError(f"{self.path}: tensor '{key}' has layout {t.layout}; only dense tensors can be mapped")
        self._specs: dict[str, TensorSpec] | None = None
        self._groups: dict[str, tuple[str, ...]] | None = None
        self._aliases: dict[str, str] | None = None

    def specs(self) -> dict[str, TensorSpec]:
        from ..torch_dtypes import spec_of

        if self._specs is None:
            self._specs = {k: spec_of(t, k, str(self.path)) for k, t in self._tensors.items()}
        return dict(self._specs)

    def metadata(self) -> dict[str, str]:
        return {}

    def get_tensor(self, key: str):
        try:
            return self._tensors[key]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this checkpoint") from None

    def _analyse_storage(self) -> None:
        by_storage: dict[int, list[str]] = {}
        views: dict[tuple, str] = {}
        aliases: dict[str, str] = {}
        for key, t in self._tensors.items():
            storage = t.untyped_storage()
            if t.numel() == 0 or storage.nbytes() == 0:
                continue
            by_storage.setdefault(storage.data_ptr(), []).append(key)
            view = (storage.data_ptr(), t.storage_offset(), t.dtype, tuple(t.shape), t.stride())
            if view in views:
                aliases[key] = views[view]
            else:
                views[view] = key
        self._groups = {k: tuple(x for x in keys if x != k) for keys in by_storage.values() if len(keys) > 1 for k in keys}
        self._aliases = aliases

    def aliases(self) -> dict[str, str]:
        """Alias key → canonical key, for tensors that are the same view of the same storage."""
        if self._aliases is None:
            self._analyse_storage()
        return dict(self._aliases or {})

    def shares_storage(self, key: str) -> tuple[str, ...]:
        """Other keys whose tensors use the same storage as ``key`` (any view); empty if none."""
        self.get_tensor(key)
        if self._groups is None:
            self._analyse_storage()
        return (self._groups or {}).get(key, ())

    def close(self) -> None:
        self._tensors = {}  # drops the references that keep the file mapped

    def __enter__(self) -> "TorchReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_torch(path: str | Path, *, trust_pickle: bool = False, unwrap: str | None = None,
               strip_prefix: str | None = None, **_other_formats_options: Any) -> TorchReader:
    """Open a torch checkpoint; see the module docstring for the unwrap rule and ``trust_pickle``."""
    if not torch_available():
        raise MissingExtraError(f"{path}: reading a torch checkpoint needs torch, which is not installed: "
                                f"{TORCH_EXTRA}; or convert it to safetensors where torch is installed")
    return TorchReader(path, trust_pickle=trust_pickle, unwrap=unwrap, strip_prefix=strip_prefix)
