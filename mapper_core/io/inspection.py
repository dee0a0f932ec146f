"""What a checkpoint holds, from its headers: the value behind ``mapper inspect`` and its renderings."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..specs import OTHER_DTYPE_BITS, TensorSpec, format_shape
from ..text import shown
from .formats.base import non_tensors


@dataclass(frozen=True)
class TensorRow:
    key: str
    dtype: str
    shape: tuple[int, ...]
    numel: int
    nbytes: int
    shard: str | None = None  # file name, for sharded checkpoints
    alias_of: str | None = None  # canonical key when this tensor is the same view of one storage
    unwrap: str | None = None  # a torch file the unwrap rule chose no state dict in: the --unwrap taking it
    storage_bytes: int | None = None  # a view larger than its storage (a stride-0 expand): the storage's bytes
    meta: bool = False  # a meta tensor: dtype and shape without data (convert refuses to write it)

    def to_dict(self) -> dict:
        out: dict = {"key": self.key, "dtype": self.dtype, "shape": list(self.shape),
                     "numel": self.numel, "bytes": self.nbytes}
        for name in ("shard", "alias_of", "unwrap", "storage_bytes"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.meta:
            out["meta"] = True
        if self.dtype in OTHER_DTYPE_BITS:  # complex128: listed under torch's name; convert refuses to write it
            out["unstorable"] = True
        return out


@dataclass(frozen=True)
class InspectReport:
    """Keys, dtypes, shapes, sizes, totals and metadata of one checkpoint."""

    path: str
    format: str
    tensors: tuple[TensorRow, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    unwrap_path: str | None = None  # torch checkpoints: where the state dict was found ("" = top level)
    stripped_prefix: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    non_tensor: dict[str, str] = field(default_factory=dict)  # key → type name of values that are not tensors
    # torch, where the unwrap rule chose no state dict (convert and plan refuse): --unwrap → tensors it takes
    unwrap_choices: dict[str, int] | None = None
    expansion_refusal: str | None = None  # why convert and plan refuse the views larger than their storage
    # torch: containers beside the chosen state dict that may be weights too (an EMA copy): --unwrap → tensors
    other_weights: dict[str, int] = field(default_factory=dict)

    @property
    def total_values(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def stored_bytes(self) -> int:
        """Bytes once aliases are counted once."""
        return sum(t.nbytes for t in self.tensors if t.alias_of is None)

    def dtype_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.dtype] = counts.get(t.dtype, 0) + 1
        return counts

    def to_dict(self) -> dict:
        out: dict = {
            "path": self.path,
            "format": self.format,
            "tensors": [t.to_dict() for t in self.tensors],
            "totals": {"tensors": len(self.tensors), "values": self.total_values, "bytes": self.total_bytes,
                       "stored_bytes": self.stored_bytes, "dtypes": self.dtype_counts()},
            "metadata": dict(self.metadata),
        }
        if self.non_tensor:
            out["non_tensor"] = [{"key": k, "type": t} for k, t in self.non_tensor.items()]
        if self.unwrap_path is not None:
            out["unwrap_path"] = self.unwrap_path
            out["stripped_prefix"] = self.stripped_prefix or ""
            out["aliases"] = dict(self.aliases)
        if self.unwrap_choices is not None:
            out["unwrap_choices"] = dict(self.unwrap_choices)
        if self.expansion_refusal is not None:
            out["expansion_refusal"] = self.expansion_refusal
        if self.other_weights:
            out["other_weights"] = dict(self.other_weights)
        return out


def inspect_reader(reader: object, format_name: str) -> InspectReport:
    """Build the report from an open reader; uses optional extras (shards, unwrap path, aliases) when present."""
    specs: dict[str, TensorSpec] = reader.specs()  # type: ignore[attr-defined]
    aliases: dict[str, str] = reader.aliases() if hasattr(reader, "aliases") else {}
    shard_of = getattr(reader, "weight_map", None)
    survey = getattr(reader, "survey", None)  # torch: every tensor, where the unwrap rule chose none
    larger: dict[str, int] = getattr(reader, "larger_views", {})
    meta = getattr(reader, "meta_keys", frozenset())
    rows = tuple(
        TensorRow(key, s.dtype, s.shape, s.numel, s.nbytes,
                  shard=shard_of.get(key) if shard_of is not None else None,
                  alias_of=aliases.get(key), unwrap=survey.unwrap_of.get(key) if survey else None,
                  storage_bytes=larger.get(key), meta=key in meta)
        for key, s in specs.items()
    )
    return InspectReport(
        path=str(reader.path),  # type: ignore[attr-defined]
        format=format_name,
        tensors=rows,
        metadata=reader.metadata(),  # type: ignore[attr-defined]
        unwrap_path=getattr(reader, "unwrap_path", None),
        stripped_prefix=getattr(reader, "stripped_prefix", None),
        aliases=aliases,
        non_tensor=non_tensors(reader),  # type: ignore[arg-type]
        unwrap_choices=dict(survey.choices) if survey else None,
        expansion_refusal=getattr(reader, "expansion_refusal", None),
        other_weights=dict(getattr(reader, "other_weights", None) or {}),
    )


def human_bytes(n: int) -> str:
    """1536 → '1.5 KiB'; exact below 1 KiB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    return f"{n} B"  # unreachable


def counted(n: int, noun: str) -> str:
    """(1, 'shard') → '1 shard'; (2, 'shard') → '2 shards'. For the regular nouns of the reports."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def render_text(report: InspectReport) -> str:
    """A tidy table: one row per tensor, then totals, metadata and (torch) unwrap and aliases."""
    sharded = any(t.shard is not None for t in report.tensors)
    surveyed = report.unwrap_choices is not None
    header = ("key", "dtype", "shape", "values", "bytes") + (("shard",) if sharded else ()) + (("unwrap",) if surveyed else ())
    rows = []
    for t in report.tensors:
        key = t.key + (f"  (= {t.alias_of})" if t.alias_of else "")
        if t.storage_bytes is not None:
            key += f"  (view over {human_bytes(t.storage_bytes)} stored)"
        if t.meta:
            key += "  (meta: no data)"
        if t.dtype in OTHER_DTYPE_BITS:
            key += "  (safetensors cannot store it)"
        row = (shown(key), t.dtype, format_shape(t.shape), f"{t.numel:,}", human_bytes(t.nbytes))
        rows.append(row + ((shown(t.shard or ""),) if sharded else ()) + ((_unwrap_arg(t.unwrap),) if surveyed else ()))
    lines = [f"{report.path} ({report.format})", ""]
    if rows:
        lines += _table(header, rows, right={3, 4})
    else:
        lines.append("(no tensors)")
    dtypes = ", ".join(f"{d} ×{n}" for d, n in report.dtype_counts().items())
    lines += ["", f"total: {counted(len(report.tensors), 'tensor')}, {report.total_values:,} values, "
                  f"{human_bytes(report.total_bytes)} ({report.total_bytes:,} bytes)" + (f"; {dtypes}" if dtypes else "")]
    if report.aliases:
        lines.append(f"aliases: {len(report.aliases)} tensor(s) share another's storage; "
                     f"stored once: {human_bytes(report.stored_bytes)} ({report.stored_bytes:,} bytes)")
        lines += [f"  {shown(alias)} = {shown(canonical)}" for alias, canonical in report.aliases.items()]
    if report.unwrap_path is not None:
        where = f"'{report.unwrap_path}'" if report.unwrap_path else "the top level"
        strip = f", stripped prefix '{shown(report.stripped_prefix)}'" if report.stripped_prefix else ""
        lines.append(f"state dict: {where}{strip}")
    if report.other_weights:
        lines.append("beside it, other weights (an EMA copy?) that convert and plan leave behind; each --unwrap "
                     "takes one instead:")
        width = max(len(_unwrap_arg(p)) for p in report.other_weights)
        lines += [f"  --unwrap {_unwrap_arg(p).ljust(width)}  {counted(n, 'tensor')}" for p, n in report.other_weights.items()]
    if report.unwrap_choices is not None:
        lines += _choices(report.unwrap_choices)
    if report.expansion_refusal is not None:
        why = report.expansion_refusal.removeprefix(f"{report.path}: ").removeprefix("refused: ")
        lines.append(f"views larger than their storage (marked above): convert and plan refuse the file: {why}")
    elif any(t.storage_bytes is not None for t in report.tensors):
        lines.append("views larger than their storage (marked above): convert writes each out in full")
    metas = [t.key for t in report.tensors if t.meta]
    if metas:
        lines.append(f"meta tensors (marked above): {counted(len(metas), 'key')} with a shape but no data; convert "
                     "refuses to write them: skip them in the rules, or save the state dict once the weights are loaded")
    others = sorted({t.dtype for t in report.tensors if t.dtype in OTHER_DTYPE_BITS})
    if others:
        count = sum(t.dtype in OTHER_DTYPE_BITS for t in report.tensors)
        lines.append(f"dtypes safetensors cannot store (marked above): {counted(count, 'key')} of {', '.join(others)}; "
                     "convert refuses to write them: skip them in the rules, or convert them with torch first")
    if report.non_tensor:
        listed = ", ".join(f"{k!r} ({t})" for k, t in list(report.non_tensor.items())[:8])
        more = f" and {len(report.non_tensor) - 8} more (see --json)" if len(report.non_tensor) > 8 else ""
        fate = ("DCP's pickled bytes, never unpickled: convert to safetensors leaves them behind, --output-format "
                "dcp without --rules carries them over" if report.format == "dcp"
                else "convert leaves them behind; those JSON can hold go to metadata 'mapper.extra'")
        lines.append(f"non-tensor values ({fate}): {listed}{more}")
    if report.metadata:
        lines.append("metadata:")
        width = max(len(shown(k)) for k in report.metadata)
        lines += [f"  {shown(k).ljust(width)}  {shown(v)}" for k, v in report.metadata.items()]
    return "\n".join(lines)


def _unwrap_arg(path: str | None) -> str:
    if path is None:
        return "-"
    return path if path and all(c.isalnum() or c in "._-" for c in path) else repr(path)


def _choices(choices: dict[str, int]) -> list[str]:
    """The --unwrap choices of a torch file the unwrap rule chose no state dict in."""
    if not choices:
        return ["state dict: none: no dict holds tensors directly, so convert and plan refuse the file; "
                "save a dict of tensors instead"]
    lines = ["state dict: none chosen: the tensors are in more than one place, so convert and plan refuse the "
             "file without --unwrap (column 'unwrap'); each takes:"]
    width = max(len(_unwrap_arg(c)) for c in choices)
    for path, n in choices.items():
        note = " (the top level's own; the containers are left behind)" if path == "" else ""
        lines.append(f"  --unwrap {_unwrap_arg(path).ljust(width)}  {counted(n, 'tensor')}{note}")
    return lines


def inspect_path(path: str | Path, format: str | None = None, **options: object) -> InspectReport:
    """Open ``path`` with the built-in formats and report on it (Python API twin of ``mapper inspect``)."""
    from .formats import builtin_formats, choose_format

    fmt = choose_format(path, builtin_formats(), format)
    if fmt.name == "torch":  # inspect looks and never writes: what convert refuses is shown (TorchReader)
        options.setdefault("survey", True)
    with fmt.open(Path(path), **options) as reader:
        return inspect_reader(reader, fmt.name)
