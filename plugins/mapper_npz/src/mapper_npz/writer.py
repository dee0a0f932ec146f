"""Write ``.npz`` archives one array at a time, atomically, readable by ``numpy.load``.

``save_npz`` writes a mapping of arrays or tensors; ``convert_to_npz`` maps a checkpoint with a
rules file (the plan, transforms included) and streams each tensor into the archive, so only
one tensor is in memory at a time. numpy has no bfloat16: such tensors are refused (add a
``cast`` step to F32 in the rules).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from numpy.lib import format as npy

from mapper_core.errors import BadInputError, MapperError, PlanError
from mapper_core.io.atomic import AtomicFiles


class NpzWriteError(BadInputError):
    """A tensor cannot be stored in an .npz (a dtype numpy lacks, a name that cannot be a member)."""


def _as_numpy(key: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        array = value
    else:  # a torch tensor
        import torch

        if value.dtype == torch.bfloat16:
            raise NpzWriteError(f"tensor '{key}' is BF16, which numpy (and so .npz) cannot hold; add a "
                                "`cast: {dtype: F32}` step to its rule, or convert to safetensors instead")
        array = value.detach().cpu().contiguous().numpy()
    if array.dtype.hasobject:
        raise NpzWriteError(f"array '{key}' holds Python objects; .npz files written here never need pickle")
    return array


def _member(key: str) -> str:
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise NpzWriteError(f"tensor name {key!r} cannot name an .npz member (empty parts, '..', a leading '/' "
                            "or '\\'); rename it in the rules")
    return key + ".npy"


def write_arrays(path: str | Path, items: Iterable[tuple[str, Callable[[], Any]]], *,
                 compressed: bool = False, force: bool = False) -> Path:
    """Write ``(name, load)`` pairs to ``path``: each ``load()`` is called when its member is written."""
    path = Path(path)
    if path.exists() and not force:
        from mapper_core.errors import OutputExistsError

        raise OutputExistsError(f"{path}: already exists; pass force=True (--force) to replace it")
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with AtomicFiles() as out:
        fd = out.create(path)
        with os.fdopen(fd, "w+b", closefd=False) as raw, zipfile.ZipFile(raw, "w", compression=mode) as zf:
            seen: set[str] = set()
            for key, load in items:
                member = _member(key)
                if member in seen:
                    raise NpzWriteError(f"tensor '{key}' appears twice")
                seen.add(member)
                array = _as_numpy(key, load())
                with zf.open(member, "w", force_zip64=True) as f:
                    npy.write_array(f, array, allow_pickle=False)
                del array
        out.commit()
    return path


def save_npz(path: str | Path, tensors: Mapping[str, Any], *, compressed: bool = False, force: bool = False) -> Path:
    """Write torch tensors or numpy arrays to ``path`` as an .npz (``numpy.load`` reads it)."""
    return write_arrays(path, ((k, (lambda v=v: v)) for k, v in tensors.items()), compressed=compressed, force=force)


def convert_to_npz(src: str | Path, dst: str | Path, rules: str | Path | None = None, *,
                   compressed: bool = False, force: bool = False, plugin_manager: Any = None) -> Path:
    """Map ``src`` (any format a plugin reads) with ``rules`` (a file or ``plugin:name``; None keeps
    every key) and write the result to ``dst`` as an .npz, one tensor at a time."""
    from mapper_core.io.tensor_ops import apply_chain
    from mapper_core.plan import make_plan
    from mapper_core.plugins import load_rules, open_checkpoint

    with open_checkpoint(src, plugin_manager=plugin_manager) as reader:
        if rules is None:
            items = [(k, (lambda k=k: reader.get_tensor(k))) for k in reader.specs()]
            return _write(dst, items, compressed, force)
        ruleset = load_rules(rules, plugin_manager=plugin_manager)
        plan = make_plan(reader.specs(), ruleset, source_origin=str(src))
        if plan.has_errors():
            raise PlanError(f"{src}: the plan has errors; run `mapper plan {src} --rules {rules}` to see them", plan)
        items = [(m.target, (lambda m=m: apply_chain(m.transform, _torch(reader.get_tensor(m.source)))))
                 for m in plan.loadable]
        return _write(dst, items, compressed, force)


def _torch(value: Any) -> Any:
    import torch

    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _write(dst: str | Path, items: list, compressed: bool, force: bool) -> Path:
    try:
        return write_arrays(dst, items, compressed=compressed, force=force)
    except MapperError:
        raise
    except OSError as exc:
        raise BadInputError(f"{dst}: cannot write: {exc.strerror or exc}") from None
