"""Write GGUF with ``gguf.GGUFWriter``, one tensor at a time, atomically.

``save_gguf`` writes a mapping of tensors; ``convert_to_gguf`` maps any checkpoint a plugin reads
with a rules file (e.g. ``gguf:to-gguf-llama``) and streams it: tensor infos first (from the
plan's specs), then each tensor's data as it is read and transformed. ``quantize="Q8_0"`` (or
another type ``gguf.quants`` can quantize) stores the 2-D float tensors whose rows fit the
type's block size in that type; the others stay as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, quants

from mapper_core.errors import BadInputError, OutputExistsError, PlanError
from mapper_core.io.atomic import AtomicFiles
from mapper_core.specs import TensorSpec, shown_shape

from .header import MAX_DIMS

# safetensors dtype → (numpy dtype the data is handed over in, GGUF type; None: the writer infers it)
STORED: dict[str, tuple[Any, Q | None]] = {
    "F32": (np.float32, None), "F16": (np.float16, None), "F64": (np.float64, None),
    "I8": (np.int8, None), "I16": (np.int16, None), "I32": (np.int32, None), "I64": (np.int64, None),
    "BF16": (np.uint16, Q.BF16),
}


class GgufWriteError(BadInputError):
    """A tensor or a metadata value cannot be stored in GGUF."""


def _plan_tensor(key: str, spec: TensorSpec, quantize: Q | None) -> tuple[tuple[int, ...], Any, int, Q | None, bool]:
    """(shape handed to the writer, numpy dtype, nbytes, raw type, quantize this one?)."""
    if spec.dtype not in STORED:
        raise GgufWriteError(f"tensor '{key}' is {spec.dtype}, which GGUF cannot store here; supported: "
                             f"{', '.join(STORED)}; add a cast step to its rule")
    if len(spec.shape) > MAX_DIMS:
        raise GgufWriteError(f"tensor '{key}' is {spec.dtype} {shown_shape(spec.shape)}: {len(spec.shape)} dimensions, but a "
                             f"GGUF tensor has at most {MAX_DIMS} (llama.cpp refuses more); add a reshape step to "
                             "its rule")
    block, size = quants.GGML_QUANT_SIZES[quantize] if quantize is not None else (0, 0)
    if quantize is not None and spec.dtype in ("F32", "F16", "BF16") and len(spec.shape) == 2 \
            and spec.shape[1] % block == 0:
        byte_shape = (spec.shape[0], spec.shape[1] // block * size)
        return byte_shape, np.uint8, byte_shape[0] * byte_shape[1], quantize, True
    dtype, raw = STORED[spec.dtype]
    return spec.shape, dtype, spec.nbytes, raw, False


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    import torch

    if value.dtype == torch.bfloat16:
        return value.detach().cpu().contiguous().view(torch.int16).numpy().view(np.uint16)
    return value.detach().cpu().contiguous().numpy()


def write_tensors(path: str | Path, items: Iterable[tuple[str, TensorSpec, Callable[[], Any]]], *,
                  arch: str = "llama", metadata: Mapping[str, Any] | None = None,
                  quantize: str | None = None, force: bool = False) -> Path:
    """Write ``(name, spec, load)`` triples; each ``load()`` is called when its data is written."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists; pass force=True to replace it")
    qtype = _quant_type(quantize)
    items = list(items)
    try:
        _write(path, items, arch, metadata, qtype)
    except OSError as exc:  # a full disk, a read-only folder: the temporary is gone
        why = f"{exc.strerror} ({exc.filename})" if exc.strerror and exc.filename else exc.strerror or str(exc)
        if exc.errno is None:  # numpy's tofile: "2048 requested and 528 written"
            why += " (a short write: is the disk full?)"
        raise GgufWriteError(f"{path}: cannot write: {why}; nothing was written") from None
    return path


def _write(path: Path, items: list, arch: str, metadata: Mapping[str, Any] | None, qtype: Q | None) -> None:
    with AtomicFiles() as out:
        out.create(path)
        writer = GGUFWriter(out.temp_of(path), arch)
        try:
            for key, value in (metadata or {}).items():
                _add_value(writer, key, value)
            layouts = []
            for key, spec, _ in items:
                shape, dtype, nbytes, raw, quantized = _plan_tensor(key, spec, qtype)
                writer.add_tensor_info(key, shape, np.dtype(dtype), nbytes, raw_dtype=raw)
                layouts.append((spec, quantized))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for (key, spec, load), (_, quantized) in zip(items, layouts):
                array = _numpy(load())
                if tuple(array.shape) != spec.shape:
                    raise GgufWriteError(f"tensor '{key}' is {list(array.shape)}, but {list(spec.shape)} was planned")
                if quantized:
                    array = quants.quantize(array.astype(np.float32), qtype)  # type: ignore[arg-type]
                writer.write_tensor_data(np.ascontiguousarray(array))
        finally:
            writer.close()
        out.commit()


def save_gguf(path: str | Path, tensors: Mapping[str, Any], *, arch: str = "llama",
              metadata: Mapping[str, Any] | None = None, quantize: str | None = None, force: bool = False) -> Path:
    """Write torch tensors or numpy arrays to ``path`` as GGUF (``gguf.GGUFReader`` reads it)."""
    from mapper_core.io.torch_dtypes import spec_of

    def spec(key: str, value: Any) -> TensorSpec:
        if isinstance(value, np.ndarray):
            import torch

            return spec_of(torch.from_numpy(np.ascontiguousarray(value)), key)
        return spec_of(value, key)

    items = [(k, spec(k, v), (lambda v=v: v)) for k, v in tensors.items()]
    return write_tensors(path, items, arch=arch, metadata=metadata, quantize=quantize, force=force)


def convert_to_gguf(src: str | Path, dst: str | Path, rules: str | Path, *, arch: str = "llama",
                    metadata: Mapping[str, Any] | None = None, quantize: str | None = None,
                    force: bool = False, plugin_manager: Any = None) -> Path:
    """Map ``src`` with ``rules`` (a file or ``plugin:name``) and write ``dst`` as GGUF, one tensor at a time."""
    import torch

    from mapper_core.io.tensor_ops import apply_chain
    from mapper_core.plan import make_plan
    from mapper_core.plugins import load_rules, open_checkpoint

    ruleset = load_rules(rules, plugin_manager=plugin_manager)
    with open_checkpoint(src, plugin_manager=plugin_manager) as reader:
        plan = make_plan(reader.specs(), ruleset, source_origin=str(src))
        if plan.has_errors():
            raise PlanError(f"{src}: the plan has errors; run `mapper plan {src} --rules {rules}` to see them", plan)

        def load(m: Any) -> Any:
            value = reader.get_tensor(m.source)
            return apply_chain(m.transform, torch.from_numpy(value) if isinstance(value, np.ndarray) else value)

        items = [(m.target, TensorSpec(m.result_dtype, tuple(m.result_shape)), (lambda m=m: load(m)))
                 for m in plan.loadable]
        return write_tensors(dst, items, arch=arch, metadata=metadata, quantize=quantize, force=force)


def _quant_type(name: str | None) -> Q | None:
    if name is None:
        return None
    try:
        qtype = Q[name]
        quants.quantize(np.zeros((1, quants.GGML_QUANT_SIZES[qtype][0]), dtype=np.float32), qtype)
    except (KeyError, NotImplementedError):
        raise GgufWriteError(f"gguf cannot quantize to {name!r}; try Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1") from None
    return qtype


def _add_value(writer: GGUFWriter, key: str, value: Any) -> None:
    if key == "general.architecture":
        return  # GGUFWriter writes it from ``arch``
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value) if 0 <= value < 2**32 else writer.add_int64(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, (list, tuple)):
        writer.add_array(key, list(value))
    else:
        raise GgufWriteError(f"metadata '{key}' is {type(value).__name__}; GGUF holds str, int, float, bool and lists")
