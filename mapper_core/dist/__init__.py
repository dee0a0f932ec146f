"""Conversion on torch.distributed: ``torchrun ... -m mapper_core.dist convert SRC DST [options]``.

The top layer, beside the command line it reuses: every rank parses the same ``mapper convert``
options, plans from the headers, takes its deterministic share of the output shards
(:func:`mapper_core.io.cost.assign_shards`), writes them atomically and records them in the
manifest; after a barrier rank 0 writes the index. Any rank count works, on CPU-only machines
(gloo), unrelated to how the checkpoint was trained. See docs/distributed.md.
"""
from __future__ import annotations

from .ranks import TorchRanks

__all__ = ["TorchRanks"]
