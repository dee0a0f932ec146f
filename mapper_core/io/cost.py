"""What a conversion will cost, from headers alone: bytes to read and write, shards per worker,
peak memory per worker, the largest tensor. Also the one rule that assigns shards to workers,
so ``--workers N``, the torchrun ranks and ``mapper plan --cost`` agree. No torch here.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..specs import TensorSpec




def assign_shards(sizes: Sequence[int], workers: int) -> list[list[int]]:
    """Shard indices per worker, bin-packed by bytes: largest shard first to the least-loaded
    worker (ties: the lower worker number), each worker's list in shard order. Deterministic.
    A list per worker (``workers`` is bounded by :data:`mapper_core.io.MAX_WORKERS` where a user gives it)."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    loads = [(0, w) for w in range(workers)]
    heapq.heapify(loads)
    out: list[list[int]] = [[] for _ in range(workers)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        load, w = heapq.heappop(loads)
        out[w].append(i)
        heapq.heappush(loads, (load + sizes[i], w))
    return [sorted(s) for s in out]


@dataclass(frozen=True)
class WorkerCost:
    worker: int
    shards: tuple[str, ...]
    write_bytes: int
    peak_memory: int  # the largest tensor it decodes through memory (0 when every byte is copied file to file)


@dataclass(frozen=True)
class Cost:
    """The cost of writing ``shards`` (name → [(key, spec, decoded)]) with ``workers`` processes."""

    read_bytes: int
    write_bytes: int
    tensors: int
    largest: tuple[str, TensorSpec] | None
    workers: tuple[WorkerCost, ...] = field(default=())  # those given a shard
    idle_workers: int = 0  # those given none (more workers than shards)

    def to_dict(self) -> dict[str, Any]:
        key, spec = self.largest if self.largest else (None, None)
        return {
            "read_bytes": self.read_bytes, "write_bytes": self.write_bytes, "tensors": self.tensors,
            "largest_tensor": None if key is None else {"key": key, **spec.to_dict(), "bytes": spec.nbytes},
            "workers": [{"worker": w.worker, "shards": list(w.shards), "write_bytes": w.write_bytes,
                         "peak_memory_bytes": w.peak_memory} for w in self.workers],
            "idle_workers": self.idle_workers,
        }


def estimate(shards: Sequence[tuple[str, Sequence[tuple[str, TensorSpec, bool]]]], workers: int,
             read_bytes: int, header_bytes: Sequence[int] | None = None) -> Cost:
    """The cost of writing ``shards``: each is (file name, [(key, spec, decoded through memory)]).

    A tensor decoded through memory (a torch tensor made contiguous, a DCP tensor reassembled
    from chunks, a transform step) costs its bytes of memory while it is written; a byte range
    copied file to file costs a bounded buffer (counted as 0 here)."""
    headers = list(header_bytes or [0] * len(shards))
    sizes = [sum(s.nbytes for _, s, _ in group) + h for (_, group), h in zip(shards, headers)]
    largest = None
    for _, group in shards:
        for key, spec, _ in group:
            if largest is None or spec.nbytes > largest[1].nbytes:
                largest = (key, spec)
    per = []
    for w, indices in enumerate(assign_shards(sizes, workers)):
        if not indices:  # more workers than shards: counted, not listed
            continue
        peak = max((s.nbytes for i in indices for _, s, decoded in shards[i][1] if decoded), default=0)
        per.append(WorkerCost(w, tuple(shards[i][0] for i in indices), sum(sizes[i] for i in indices), peak))
    return Cost(read_bytes, sum(sizes), sum(len(g) for _, g in shards), largest, tuple(per), workers - len(per))


def conversion_cost(reader: Any, plan: Any, workers: int = 1, max_shard_size: int | None = None) -> Cost:
    """The cost of ``mapper convert`` with this plan, from headers only (nothing is read but them).

    Shards are split as convert splits them (``max_shard_size``, Hugging Face names); aliases
    are counted as separate tensors (an upper bound)."""
    from pathlib import Path

    from ..rules.transforms import is_header_only
    from .formats.writer import Entry, encode_header, library_order
    from .formats.shards import shard_names, split_shards

    specs = reader.specs()
    entries, decoded = [], {}
    for m in plan.loadable:
        spec = specs[m.source]
        out = TensorSpec(m.result_dtype, tuple(m.result_shape)) if m.transform else spec
        entries.append(Entry(m.target, out, None))  # type: ignore[arg-type]  # headers only: no data
        decoded[m.target] = (memory_for(reader, m.source, spec)
                             + (out.nbytes if m.transform and not is_header_only(m.transform) else 0))
    groups = split_shards(entries, max_shard_size)
    names = [p.name for p in shard_names(Path("model.safetensors.index.json"), len(groups))[0]] \
        if len(groups) > 1 else ["model.safetensors"]
    shards = [(name, [(e.key, e.spec, decoded[e.key] > 0) for e in g]) for name, g in zip(names, groups)]
    headers = [len(encode_header(library_order(g), {})[0]) for g in groups]
    cost = estimate(shards, workers, sum(specs[m.source].nbytes for m in plan.loadable), headers)
    per = tuple(WorkerCost(w.worker, w.shards, w.write_bytes,
                           max((decoded[k] for name in w.shards for k, _, _ in dict(shards)[name]), default=0))
                for w in cost.workers)
    return Cost(cost.read_bytes, cost.write_bytes, cost.tensors, cost.largest, per, cost.idle_workers)


def memory_for(reader: Any, key: str, spec: TensorSpec) -> int:
    """Bytes of memory reading ``key`` takes: 0 for a byte range copied file to file (safetensors),
    the tensor for one decoded, plus the chunk buffer for a DCP tensor (its chunks are streamed into it)."""
    if hasattr(reader, "locate"):
        return 0
    if getattr(reader, "chunks", None) is not None:
        from .formats.dcp_blob import BUFFER  # no torch: the module imports it only to read a chunk

        return spec.nbytes + min(BUFFER, spec.nbytes)
    return spec.nbytes  # torch files: an upper bound (contiguous tensors of a zip file are copied file to file)


def render_cost(cost: Cost, listed: int = 3) -> str:
    """The text form of :class:`Cost` (JSON: ``Cost.to_dict``)."""
    from .inspection import counted, human_bytes

    lines = ["", "COST (from headers)",
             f"  read {human_bytes(cost.read_bytes)} of tensors, write {human_bytes(cost.write_bytes)} "
             f"({counted(cost.tensors, 'tensor')})"]
    if cost.largest:
        key, spec = cost.largest
        lines.append(f"  largest tensor: {key} {spec.dtype} {list(spec.shape)} ({human_bytes(spec.nbytes)})")
    for w in cost.workers:
        names = list(w.shards)
        shown = ", ".join(names) if len(names) <= listed else f"{names[0]} … {names[-1]}"
        memory = human_bytes(w.peak_memory) if w.peak_memory else "a copy buffer (bytes copied file to file)"
        lines.append(f"  worker {w.worker}: {counted(len(names), 'shard')}, {human_bytes(w.write_bytes)}, peak memory "
                     f"≈ {memory}{': ' + shown if names else ''}")
    if cost.idle_workers:
        lines.append(f"  {counted(cost.idle_workers, 'more worker')}: idle (more workers than shards)")
    return "\n".join(lines)
