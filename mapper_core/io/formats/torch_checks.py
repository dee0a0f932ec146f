"""The torch side of reading a hostile file: what a loaded tensor may be, and reading it a second way.

:func:`check_loaded_tensor` refuses, with the key and what to do, what safetensors cannot hold
or what would blow up later: nested tensors, tensors on a device other than the CPU, other
layouts; and it charges a view larger than its storage (a stride-0 ``expand``, say) to the
file's expansion budget, since writing it makes that many bytes.

:func:`unstorable_refusal` and :func:`meta_refusal` say why a key the reader lists cannot be
converted; :func:`refuse_unwritable` raises the first before anything is written, for the keys a
conversion would write (the file stays readable: rules that skip those keys convert the rest).

:func:`independent_source` reads a memory-mapped tensor's bytes again through the zip reader
(decompressing and checking as the zip format says, byte-swapping a big-endian file), not
through the mapping torch made: ``--verify`` compares the output with this independent read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...errors import CheckpointError, ExpansionError
from ...plan.text import shown
from ...specs import shown_shape
from .pages import FileMappings
from .torch_archive import Archive, ExpansionBudget, RecordRange

PIECE = 8 * 1024 * 1024


def check_loaded_tensors(path: Path, state: dict, budget: ExpansionBudget,
                         survey: bool = False) -> tuple[dict[str, int], str | None]:
    """:func:`check_loaded_tensor` on each tensor of ``state``. With ``survey`` (``mapper inspect``: it
    never writes the bytes), views larger than their storage are not refused: returned are each
    one's key → its storage's bytes, and the refusal ``budget`` would have made (None if within it).
    Meta tensors pass (see :func:`meta_refusal`)."""
    import torch

    views = ExpansionBudget(path, budget.file_size, None) if survey else budget
    larger: dict[str, int] = {}
    for key, t in state.items():
        if isinstance(t, torch.Tensor) and not is_meta(t) and check_loaded_tensor(path, key, t, views):
            larger[key] = t.untyped_storage().nbytes()
    if not survey:
        return larger, None
    try:
        for what, nbytes in views.spent:
            budget.spend(what, nbytes)
    except ExpansionError as exc:
        return larger, str(exc)
    return larger, None


def is_meta(t: Any) -> bool:
    """A tensor on the meta device: a dtype and shape without data. The file stays readable (its
    header is known); only writing or loading that key is refused, by :func:`meta_refusal`."""
    import torch

    return t.device.type == "meta" and not t.is_nested and t.layout == torch.strided


def meta_refusal(path: Path, key: str) -> CheckpointError:
    """Why the bytes of meta tensor ``key`` cannot be read, and what to do."""
    return CheckpointError(f"{path}: tensor '{shown(key)}' is a meta tensor: a shape without data (saved from a "
                           "model built on the meta device); there are no bytes to convert. Save the state dict "
                           "once the weights are loaded or initialised on the CPU and run again; or, if the key "
                           "is not needed (a buffer such as rotary 'inv_freq' the model recomputes), skip it in "
                           "the rules (skip: a pattern matching it)")


def unstorable_refusal(path: Path, key: str, dtype: str) -> CheckpointError:
    """Why tensor ``key`` of ``dtype`` (one safetensors cannot store, listed under torch's name) cannot be
    converted, and what to do."""
    return CheckpointError(f"{path}: tensor '{shown(key)}' has dtype {dtype}, which safetensors cannot store (nor "
                           "can mapper's DCP output); if the key is not needed, skip it in the rules (skip: a "
                           "pattern matching it) and the rest converts; else convert it with torch before mapping "
                           "(e.g. complex128 -> complex64, or to two real tensors with torch.view_as_real)")


def refuse_unwritable(reader: Any, plan: Any = None) -> None:
    """Raise, before anything is written, when the conversion ``plan`` describes (None: every tensor as it
    is) would write a key that ``reader`` lists but whose bytes it refuses: a meta tensor (``meta_keys``)
    or a dtype safetensors cannot store (``unstorable_keys``: key → dtype). Free when the reader has none."""
    meta: frozenset = getattr(reader, "meta_keys", frozenset())
    other: dict[str, str] = getattr(reader, "unstorable_keys", {})
    if not meta and not other:
        return
    sources = [m.source for m in plan.loadable] if plan is not None else list(reader.specs())
    hits = list(dict.fromkeys(k for k in sources if k in meta or k in other))
    if not hits:
        return
    first = hits[0]
    error = meta_refusal(reader.path, first) if first in meta else unstorable_refusal(reader.path, first, other[first])
    if len(hits) > 1:
        more = ", ".join(f"'{shown(k)}' ({'meta' if k in meta else other[k]})" for k in hits[1:6])
        more += f" and {len(hits) - 6} more" if len(hits) > 6 else ""
        error = CheckpointError(f"{error}. The conversion would write {len(hits) - 1} more such "
                                f"key{'s' if len(hits) > 2 else ''}: {more}")
    raise error


def check_loaded_tensor(path: Path, key: str, t: Any, budget: ExpansionBudget) -> bool:
    """Refuse what cannot be mapped; charge a view larger than its storage to ``budget`` (True then)."""
    import torch

    name = shown(key)
    if t.is_nested:
        raise CheckpointError(f"{path}: tensor '{name}' is a nested tensor (torch.nested: tensors of different "
                              "shapes in one); safetensors holds dense tensors only. Save its parts separately "
                              "(e.g. dict(enumerate(t.unbind()))) and run again")
    if t.layout != torch.strided:
        raise CheckpointError(f"{path}: tensor '{name}' has layout {t.layout}; only dense tensors can be mapped "
                              "(save t.to_dense() instead)")
    if t.device.type != "cpu":
        raise CheckpointError(f"{path}: tensor '{name}' is on device {t.device}; there are no bytes to convert. "
                              "Save the state dict once the weights are loaded or initialised on the CPU, and run again")
    dense = t.numel() * t.element_size()
    if dense >= 2**63:  # no allocator or file offset can hold it, allowed or not
        raise CheckpointError(f"{path}: tensor '{name}' (shape {shown_shape(t.shape)}) would take {dense:,} "
                              "bytes; no file or memory can hold it. The file is hostile or damaged")
    stored = t.untyped_storage().nbytes()
    if dense > stored:  # writing it makes bytes the file does not have (a repeated view)
        budget.spend(f"tensor '{name}' (shape {shown_shape(t.shape)}, stride {shown_shape(t.stride())}, over "
                     f"{stored:,} stored bytes)", dense - stored)
        return True
    return False


def _extent(t: Any) -> tuple[int, int]:
    """(first, last + 1) element of the storage a non-empty view reaches."""
    last = t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride()) if n > 0)
    return t.storage_offset(), last + 1


def _storage_record(t: Any, archive: Archive, mappings: FileMappings) -> RecordRange | None:
    """The zip record range holding ``t``'s whole storage, found from where torch mapped it."""
    import torch

    if not archive.is_zip or archive.in_memory or t.numel() == 0 or not mappings:
        return None
    whole = torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())  # for its address only
    found = mappings.file_range(whole)
    return archive.record_range(*found) if found else None


def independent_source(t: Any, archive: Archive, mappings: FileMappings) -> RecordRange | Callable[[], Any] | None:
    """How to read ``t`` again without torch's mapping: a record range to stream (contiguous,
    little-endian), a function building it from its record's bytes, or None when ``t`` is not a view of
    the mapped file (a legacy file or compressed records are loaded into memory)."""
    rng = _storage_record(t, archive, mappings)
    if rng is None:
        return None
    size = t.element_size()
    first, end = _extent(t)
    part = RecordRange(rng.path, rng.record, rng.start + first * size, rng.start + end * size,
                       rng.data_start, rng.stored)
    if t.is_contiguous() and (archive.byteorder == "little" or size == 1):
        return part
    return lambda: _rebuilt(t, part, archive, first)


def _rebuilt(t: Any, part: RecordRange, archive: Archive, first: int) -> Any:
    import torch

    data = bytearray()
    for piece in part.pieces(PIECE):
        data += piece
    if len(data) != part.nbytes:
        raise CheckpointError(f"{archive.path}: record '{part.record}' ends before the bytes of a tensor on it; "
                              "the file is truncated or damaged")
    raw = torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    size = t.element_size()
    unit = size // 2 if t.dtype.is_complex else size  # torch swaps a complex number's two halves apart
    if archive.byteorder == "big" and unit > 1:
        raw = raw.reshape(-1, unit).flip(1).reshape(-1)
    return raw.view(t.dtype).as_strided(tuple(t.shape), tuple(t.stride()), t.storage_offset() - first)
