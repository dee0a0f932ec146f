"""torch pickle checkpoints (.pt .pth .bin .model .ckpt), zip and legacy formats.

Loading (:mod:`.torch_pickle`): ``torch.load(weights_only=True)`` always; zip files are
memory-mapped (``mmap=True``) so memory stays flat and ``specs()`` reads only the pickle. A
file that needs more than ``weights_only`` allows is refused with
:class:`~mapper_core.errors.UnsafeCheckpointError` naming the offending globals (and saying
so when it is a whole pickled ``nn.Module``); ``trust_pickle=True`` loads it with
``weights_only=False`` (which runs whatever code the file holds) and warns with
:class:`TrustPickleWarning`. A pickled ``nn.Module`` is then read through its ``state_dict()``,
with a :class:`PickledModuleWarning`.

Unwrap rule (override with ``unwrap``/``strip_prefix``):

1. the loaded object itself, if it is a dict whose values are all tensors;
2. else the first of ``state_dict``, ``model_state_dict``, ``model``, ``module``, ``net``
   whose value is a dict, applying the rule again inside it; other entries (``epoch``,
   ``optimizer``, ...) are ignored;
3. else the dict itself if it holds any tensor, unless a value beside those tensors is a
   container (dict, list) holding tensors itself: that is refused, naming each container and
   its tensor count (:mod:`.torch_unwrap`), since its weights would be left behind;
4. then a ``module.`` prefix (DataParallel) is stripped while every tensor's key has it.

The chosen dict may hold non-tensor values too (``'step': 5``, a config, a string): they are
not specs; ``non_tensors()`` reports them (key → type name) and ``extra_values()`` gives those
JSON can hold within a bound (:mod:`.torch_extra`: a value JSON would spell out too large is named
in a warning and in its type name instead), so a conversion can record them. They never make the
file unreadable.

``unwrap="a.b"`` takes ``obj["a"]["b"]`` instead (``""`` is the top level, a number indexes a
list: ``"0"``), as it is: containers of tensors beside it are reported by ``non_tensors()`` with
their tensor count, and left behind; ``strip_prefix="x."``
strips that prefix from the keys that have it (``""`` strips nothing).

Aliasing: tied weights and views share one storage. ``aliases()`` maps an alias key to its
canonical key (the first in checkpoint order) only when both are the *same view*: same
storage, storage offset, dtype, shape and stride; a writer may store the canonical once and
record the alias. ``shares_storage(key)`` lists every other key whose tensor uses the same
storage in any way (e.g. ``w`` and ``w[0]``): those must be written as separate copies.
Empty tensors never alias anything. A meta tensor (a dtype and shape without data) is in
``specs()`` and ``meta_keys``; ``get_tensor`` refuses it naming the key, so only a plan that
writes or loads it fails. A tensor of a dtype safetensors cannot store (``complex128``) is handled
the same way: in ``specs()`` under torch's dtype name, in ``unstorable_keys``, refused by ``get_tensor``. ``get_tensor`` returns the tensor as stored (possibly
non-contiguous, possibly a memory-mapped view); callers must not modify it.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ...errors import TORCH_EXTRA, CheckpointError, CheckpointWarning, MissingExtraError, torch_available
from ...specs import TensorSpec
from ...text import listed
from .pages import FileMappings
from .torch_archive import RecordRange
from .torch_extra import MAX_DEPTH, MAX_TEXT, MAX_VALUES, ExtraValues
from .torch_extra import extra_values as bounded_extra
from .torch_checks import check_loaded_tensors, independent_source, is_meta, meta_refusal, unstorable_refusal
from .torch_pickle import INDEX_SUFFIXES, PickledModuleWarning, TrustPickleWarning, load_pickle, sniff_torch
from .torch_unwrap import Survey, UndecidedError, is_tensor, other_weights, tensors_inside, unwrap_state_dict
from .torch_unwrap import survey as survey_of

__all__ = ["PickledModuleWarning", "TorchReader", "TrustPickleWarning", "open_torch", "sniff_torch",
           "strip_key_prefix", "unwrap_state_dict"]

SUFFIXES = (".pt", ".pth", ".bin", ".model", ".ckpt")
DP_PREFIX = "module."


def strip_key_prefix(state: dict, path: Path, strip_prefix: str | None) -> tuple[dict, str]:
    """Keys without the prefix (default rule: ``module.`` while every key has it) and the prefix removed."""
    keys = [str(k) for k in state]
    if strip_prefix is None:  # judged by the tensors' keys: a 'step' beside them does not count
        removed = ""
        tensor_keys = [k for k, v in zip(keys, state.values()) if is_tensor(v)]
        while tensor_keys and all(k.startswith(removed + DP_PREFIX) for k in tensor_keys):
            removed += DP_PREFIX
    elif strip_prefix == "":
        removed = ""
    else:
        removed = strip_prefix
        if not any(k.startswith(removed) for k in keys):
            raise CheckpointError(f"{path}: no key starts with the prefix '{removed}' given to strip; e.g. '{keys[0] if keys else ''}'")
        if not removed.endswith(".") and all(k[len(removed):len(removed) + 1] == "." for k in keys if k.startswith(removed)):
            raise CheckpointError(f"{path}: stripping '{removed}' would leave every key it fits starting with '.' "
                                  f"('{keys[0][len(removed):] if keys[0].startswith(removed) else ''}'); did you mean "
                                  f"the prefix '{removed}.' (with the dot)?")
    out: dict = {}
    for k, v in zip(keys, state.values()):
        new = k[len(removed):] if k.startswith(removed) else k
        if new in out and not removed:  # e.g. the int 0 and the string '0': both are named '0'
            raise CheckpointError(f"{path}: two keys are both named '{new}' as text (keys of different types, such as "
                                  f"0 and '0'); rename one in the state dict with torch and save it again")
        if new in out:
            raise CheckpointError(f"{path}: stripping '{removed}' makes two keys '{new}'; pass --strip-prefix ''")
        out[new] = v
    return out, removed


def kept_unprefixed(state: dict, path: Path, strip_prefix: str | None) -> tuple[str, ...]:
    """The tensor keys of ``state`` (before stripping) that lack a prefix given to strip, kept as they
    are (a tied ``lm_head.weight`` beside ``model.*``); a CheckpointWarning names them."""
    if not strip_prefix:
        return ()
    keys = [str(k) for k, v in state.items() if is_tensor(v)]
    kept = tuple(k for k in keys if not k.startswith(strip_prefix))
    if kept:
        one = len(kept) == 1
        shown = listed([f"'{k}'" for k in kept], 5)
        stripped = len(keys) - len(kept)
        warnings.warn(CheckpointWarning(
            f"{path}: stripped the prefix '{strip_prefix}' from {stripped} key{'' if stripped == 1 else 's'}; "
            f"{len(kept)} key{' lacks' if one else 's lack'} it and {'is' if one else 'are'} kept as "
            f"{'it is' if one else 'they are'}: {shown}"), stacklevel=4)
    return kept


def _holding(value: Any) -> str:
    """' holding N tensors' for a container left behind beside the chosen dict (under an explicit unwrap)."""
    n = tensors_inside(value) if isinstance(value, (dict, list, tuple)) else 0
    return f" holding {n} tensor{'s' if n != 1 else ''}" if n else ""


TOO_LARGE = "too large for metadata 'mapper.extra'"


def too_large_message(path: Path, too_large: dict[str, str]) -> str:
    """Which non-tensor values a conversion leaves out of ``mapper.extra`` as too large, why, what to do."""
    named = listed([f"'{k}' ({why})" for k, why in too_large.items()], 3)
    n = len(too_large)
    return (f"{path}: {n} non-tensor value{'s' if n != 1 else ''} {TOO_LARGE}, left behind: {named}. The metadata "
            f"holds at most {MAX_VALUES:,} values, {MAX_TEXT // 2**20} MiB of text and {MAX_DEPTH} levels of nesting "
            "in all, so a small file cannot make a huge header or stall the conversion. To keep such a value, save it "
            "beside the output yourself (torch.save keeps the references it shares, which JSON spells out each time)")


class TorchReader:
    """A torch checkpoint, loaded once (memory-mapped where possible) and unwrapped to its state dict.

    ``survey=True`` is for looking, never writing (``mapper inspect``): where the unwrap rule chooses
    no state dict between containers of weights, every tensor is read, keyed by its dotted path
    (``survey`` says which ``--unwrap`` takes each); a view larger than its storage is listed in
    ``larger_views`` with the refusal in ``expansion_refusal``, not refused. Nothing is materialised."""

    def __init__(self, path: str | Path, *, trust_pickle: bool = False,
                 unwrap: str | None = None, strip_prefix: str | None = None, allow_expansion: bool = False,
                 survey: bool = False):
        import torch

        self.path = Path(path)
        loaded, self.archive, budget = load_pickle(self.path, trust_pickle, allow_expansion)
        self.module_type: str | None = None  # the class of a pickled nn.Module read through state_dict()
        if isinstance(loaded, torch.nn.Module):  # only under trust_pickle: weights_only refuses modules
            self.module_type = f"{type(loaded).__module__}.{type(loaded).__qualname__}"
            warnings.warn(f"{self.path}: holds a whole pickled nn.Module ({self.module_type}); reading its "
                          "state_dict(). Re-save it with torch.save(model.state_dict(), PATH) to load it "
                          "without --trust-pickle", PickledModuleWarning, stacklevel=3)
            loaded = loaded.state_dict()
            if unwrap is None:
                unwrap = ""
        self.survey: Survey | None = None  # with survey=True, where the unwrap rule chose no state dict
        try:
            state, self.unwrap_path = unwrap_state_dict(loaded, self.path, unwrap)
        except UndecidedError:
            if not survey:
                raise
            self.survey = survey_of(loaded, self.path)
            state, self.unwrap_path, strip_prefix = {**self.survey.extra, **self.survey.tensors}, None, ""
        # what the unwrap rule's choice leaves beside it that may be weights too (an EMA copy)
        self.other_weights = other_weights(loaded, self.unwrap_path) if unwrap is None and not self.survey else {}
        before = state
        state, self.stripped_prefix = strip_key_prefix(state, self.path, strip_prefix)
        # tensor keys a prefix given to strip does not fit are kept as they are: said, not silent
        self.kept_unprefixed: tuple[str, ...] = kept_unprefixed(before, self.path, strip_prefix)
        # before anything is done with them (detaching a nested tensor warns); with survey, views larger
        # than their storage are reported (key → storage bytes, and the refusal) instead of refused
        self.larger_views, self.expansion_refusal = check_loaded_tensors(self.path, state, budget, survey)
        # Parameters come back as nn.Parameter; hand out plain tensors sharing the same storage
        self._tensors: dict[str, torch.Tensor] = {k: v.detach() for k, v in state.items()
                                                  if isinstance(v, torch.Tensor)}
        self._extra = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
        # meta tensors (a shape without data): specs() lists them, get_tensor refuses them, so a plan that
        # skips them (a rotary 'inv_freq' buffer left on meta by init_empty_weights) converts the rest
        self.meta_keys: frozenset[str] = frozenset(k for k, t in self._tensors.items() if is_meta(t))
        # the same for a dtype safetensors cannot store (complex128): listed under torch's name, key → dtype
        from ..torch_dtypes import OTHER_TO_NAME

        self.unstorable_keys: dict[str, str] = {k: OTHER_TO_NAME[t.dtype] for k, t in self._tensors.items()
                                                if t.dtype in OTHER_TO_NAME}
        self._specs: dict[str, TensorSpec] | None = None
        self._groups: dict[str, tuple[str, ...]] | None = None
        self._aliases: dict[str, str] | None = None
        self._mappings: FileMappings | None = None
        self._extra_fit: ExtraValues | None = None
        self._extra_warned = False

    def _mapped(self) -> FileMappings:
        if self._mappings is None:
            self._mappings = FileMappings(self.path)
        return self._mappings

    def file_mappings(self) -> FileMappings | None:
        """Where the file is memory-mapped, for copying contiguous tensors file to file; None when
        nothing is mapped or the mapped bytes are not the tensors' (a big-endian file is swapped in memory)."""
        if self.archive.in_memory or self.archive.byteorder != "little":
            return None
        return self._mapped() or None

    def independent_source(self, key: str):
        """Tensor ``key`` to be read again through the zip reader, not the mapping (what --verify compares
        with): a :class:`RecordRange`, a function building the tensor, or None when the file was read into
        memory (legacy format, compressed records) and torch.load's own tensor is the only read."""
        return independent_source(self.get_tensor(key), self.archive, self._mapped())

    def specs(self) -> dict[str, TensorSpec]:
        from ..torch_dtypes import listed_spec

        if self._specs is None:
            self._specs = {k: listed_spec(t, k, str(self.path)) for k, t in self._tensors.items()}
        return dict(self._specs)

    def metadata(self) -> dict[str, str]:
        return {}

    def non_tensors(self) -> dict[str, str]:
        """Keys of the state dict whose values are not tensors (``'step': 5``) → their type name.

        They are never specs: a plan reports them and a conversion leaves them behind."""
        too_large = self._fit().too_large
        return {k: type(v).__name__ + _holding(v) + (f", {TOO_LARGE}" if k in too_large else "")
                for k, v in self._extra.items()}

    def _fit(self) -> ExtraValues:
        if self._extra_fit is None:
            self._extra_fit = bounded_extra(self._extra)
        return self._extra_fit

    def extra_values(self) -> dict[str, Any]:
        """The non-tensor values JSON can hold (a number, a string, a nested config of them), within the
        bound of :mod:`.torch_extra`; one past it is left out, named in a :class:`CheckpointWarning`."""
        fit = self._fit()
        if fit.too_large and not self._extra_warned:
            self._extra_warned = True
            warnings.warn(CheckpointWarning(too_large_message(self.path, fit.too_large)), stacklevel=2)
        return dict(fit.kept)

    def get_tensor(self, key: str):
        try:
            t = self._tensors[key]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor '{key}' in this checkpoint") from None
        if key in self.meta_keys:
            raise meta_refusal(self.path, key)
        if key in self.unstorable_keys:
            raise unstorable_refusal(self.path, key, self.unstorable_keys[key])
        return t

    def _analyse_storage(self) -> None:
        by_storage: dict[int, list[str]] = {}
        views: dict[tuple, str] = {}
        aliases: dict[str, str] = {}
        for key, t in self._tensors.items():
            if key in self.meta_keys:  # no storage: every meta tensor reports data_ptr 0
                continue
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
        if key not in self._tensors:
            self.get_tensor(key)
        if self._groups is None:
            self._analyse_storage()
        return (self._groups or {}).get(key, ())

    def close(self) -> None:
        self._tensors = {}  # drops the references that keep the file mapped
        self._extra = {}

    def __enter__(self) -> "TorchReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_torch(path: str | Path, *, trust_pickle: bool = False, unwrap: str | None = None,
               strip_prefix: str | None = None, allow_expansion: bool = False, survey: bool = False,
               allow_outside_shards: bool = False, **_other_formats_options: Any) -> Any:
    """Open a torch checkpoint; see the module docstring for the unwrap rule and ``trust_pickle``, and
    :class:`TorchReader` for ``survey`` (what ``mapper inspect`` passes). A ``*.bin.index.json`` opens
    its shards (:class:`~.torch_shards.ShardedTorchReader`; ``allow_outside_shards`` as for safetensors)."""
    if not torch_available():
        raise MissingExtraError(f"{path}: reading a torch checkpoint needs torch, which is not installed: "
                                f"{TORCH_EXTRA}; or convert it to safetensors where torch is installed")
    if Path(path).name.lower().endswith(INDEX_SUFFIXES):
        from .torch_shards import ShardedTorchReader

        return ShardedTorchReader(path, open_shard=TorchReader, allow_outside_shards=allow_outside_shards,
                                  trust_pickle=trust_pickle, unwrap=unwrap, strip_prefix=strip_prefix,
                                  allow_expansion=allow_expansion, survey=survey)
    return TorchReader(path, trust_pickle=trust_pickle, unwrap=unwrap, strip_prefix=strip_prefix,
                       allow_expansion=allow_expansion, survey=survey)
