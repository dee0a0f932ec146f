"""The entries a conversion writes: each target key, its spec and where its bytes come from.

A safetensors source with no transform in the plan keeps its entries as columns
(:class:`~mapper_core.io.formats.entries.EntryColumns`: no object per tensor, and for the whole
file in its own order the source's header text); every other source is walked key by key,
which also finds aliases (tied weights: the same bytes read the same way, stored once).
"""
from __future__ import annotations

from functools import partial
from itertools import repeat
from operator import attrgetter, is_not
from typing import Any, Callable, Sequence

from ..errors import TORCH_EXTRA, CheckpointError, ExpansionError, MissingExtraError, torch_available
from ..gc_pause import pauses_gc
from ..plan.plan import Plan
from ..plan.tied_check import tied_aliases
from ..rules.transforms import is_header_only
from ..specs import TensorSpec
from .formats.base import FileRange, Reader
from .formats.entries import Entry, EntryColumns


@pauses_gc
def entries_to_write(reader: Reader, specs: dict[str, TensorSpec], plan: Plan | None
             ) -> tuple[Sequence[Entry], dict[str, str], int, dict[str, Entry], tuple[list[str], list[str]]]:
    """The tensors to store (aliases taken out; :class:`EntryColumns` for a safetensors source),
    the alias map in target names, how many source keys stay behind, for entries copied out of a
    torch file the entry --verify compares against (the tensor itself), and the (target, source)
    key pairs as two columns."""
    loadable = plan.loadable if plan is not None else ()
    if plan is None:
        sources = targets = list(specs)
        spec_list = list(specs.values())
    else:
        sources, targets = list(map(_SOURCE, loadable)), list(map(_TARGET, loadable))
        # each source's spec (None if absent): in file order a plain walk, else a lookup each
        spec_list = list(specs.values()) if sources == list(specs) else list(map(specs.get, sources))
        _check_plan_specs(reader, specs, loadable, spec_list)
    transformed = {m.target: m for m in loadable if m.transform} if any(map(_TRANSFORM, loadable)) else {}
    ranges_of = getattr(reader, "ranges_of", None)
    source_aliases = reader.aliases() if hasattr(reader, "aliases") else {}
    if ranges_of is not None and not transformed and not source_aliases and \
            (plan is None or len(set(sources)) == len(sources)):
        # byte ranges of one safetensors file, each source once: two entries never share bytes (an
        # empty range is never taken for an alias), so the entries stay columns
        columns = EntryColumns(targets, spec_list, *ranges_of(sources))
        if plan is None and hasattr(reader, "tensor_json"):  # the whole file as it is: its own header text
            columns.rendered = partial(reader.tensor_json, targets, spec_list)
        return columns, tied_aliases(plan, {}), len(specs) - len(sources), {}, (targets, sources)
    pairs = list(zip(sources, targets))
    locate = getattr(reader, "locate", None)
    mappings = _torch_mappings(reader) if locate is None else None
    stored: dict[Any, str] = {}  # identity of the bytes → target key that stores them
    entries: list[Entry] = []
    aliases: dict[str, str] = {}
    originals: dict[str, Entry] = {}
    for source, target in pairs:
        spec = specs[source]
        m = transformed.get(target)
        if m is not None:
            out_spec = TensorSpec(m.result_dtype, tuple(m.result_shape))
            if not is_header_only(m.transform):
                # Steps that change bytes: decode this one tensor through torch, transform, write.
                if not torch_available():  # refuse before anything is written
                    steps = ", ".join(str(s) for s in m.transform)
                    raise MissingExtraError(f"rule {m.rule} transforms '{source}' with {steps}, which changes its "
                                            f"bytes and needs torch, which is not installed: {TORCH_EXTRA}")
                entries.append(Entry(target, out_spec, _transformed(reader, source, m.transform)))
                continue
            # reshape/unsqueeze/squeeze of a contiguous tensor: same bytes, new header shape
        spec = spec if m is None else out_spec
        if locate is not None:
            loc = locate(source)
            data: Any = loc
            identity: Any = (loc, spec) if loc.end > loc.start else None  # the same bytes, read the same way
        else:
            data = _getter(reader, source) if m is None else _transformed(reader, source, m.transform)
            identity = ("key", source_aliases.get(source, source), spec.shape)
            found = mappings.file_range(reader.get_tensor(source)) if mappings else None
            again = reader.independent_source(source) if m is None and hasattr(reader, "independent_source") else None
            if again is not None:  # --verify reads the source through the zip reader, not the mapping
                originals[target] = Entry(target, spec, again)
            if found is not None:  # a contiguous slice of the memory-mapped file: copy it file to file
                originals.setdefault(target, Entry(target, spec, data))
                data = FileRange(mappings.path, *found)
        if identity is not None and identity in stored:
            aliases[target] = stored[identity]
            originals.pop(target, None)
            continue
        if identity is not None:
            stored[identity] = target
        entries.append(Entry(target, spec, data))
    aliases.update(tied_aliases(plan, aliases))  # a target name the model ties to a written one: an alias too
    # a source read for two targets (export's restored tied key) is one key taken, not two
    return entries, aliases, len(specs) - len(set(sources)), originals, (targets, sources)


_SOURCE, _TARGET, _DTYPE, _SHAPE, _TRANSFORM = (attrgetter(name) for name in
                                                ("source", "target", "dtype", "shape", "transform"))


def _check_plan_specs(reader: Reader, specs: dict[str, TensorSpec], loadable: Sequence[Any],
                      got: list[TensorSpec | None]) -> None:
    """CheckpointError unless every loadable entry's source has (``got``) the dtype and shape the plan
    expects (compared in columns; the first difference is then found one by one)."""
    if (all(map(is_not, got, repeat(None))) and list(map(_DTYPE, got)) == list(map(_DTYPE, loadable))
            and list(map(tuple, map(_SHAPE, got))) == list(map(tuple, map(_SHAPE, loadable)))):
        return
    for m in loadable:
        spec = specs.get(m.source)
        if spec is None or (spec.dtype, tuple(spec.shape)) != (m.dtype, tuple(m.shape)):
            have = "absent" if spec is None else f"{spec.dtype} {list(spec.shape)}"
            raise CheckpointError(
                f"{reader.path}: the plan expects '{m.source}' as {m.dtype} {list(m.shape)} but the file has it "
                f"{have}; make the plan from this file"
            )


def _torch_mappings(reader: Reader):
    """Where a torch reader's file is memory-mapped with the tensors' own bytes (zip checkpoints), or None."""
    from .formats.torch_format import TorchReader

    return reader.file_mappings() if isinstance(reader, TorchReader) else None


def _getter(reader: Reader, key: str) -> Callable[[], Any]:
    return lambda: reader.get_tensor(key)


def _transformed(reader: Reader, key: str, steps: tuple) -> Callable[[], Any]:
    from .tensor_ops import apply_chain  # torch: only steps that change bytes decode a tensor

    def get() -> Any:
        try:
            return apply_chain(steps, reader.get_tensor(key)).contiguous()
        except ExpansionError as exc:  # the step's allocation failed: say for which tensor
            raise ExpansionError(f"{getattr(reader, 'path', 'the source')}: tensor '{key}': {exc}") from None

    return get
