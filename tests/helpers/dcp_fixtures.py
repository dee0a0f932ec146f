"""DCP checkpoints for tests and benchmarks, written by torch's own ``torch.distributed.checkpoint``.

``save_dcp(state, folder)`` is ``dcp.save`` in one process (``no_dist=True``). ``save_sharded_dcp``
writes what two (or more) ranks write for a tensor sharded along a dimension: each rank's
``__R_0.distcp`` holds its chunk as a ``torch.save`` blob, and ``.metadata`` lists the chunks with
DCP's own ``TensorStorageMetadata`` / ``ChunkStorageMetadata`` / ``MetadataIndex`` /
``_StorageInfo``, pickled as ``FileSystemWriter.finish`` pickles them.
"""
from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Mapping

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (ChunkStorageMetadata, Metadata, MetadataIndex, TensorProperties,
                                                   TensorStorageMetadata)


def save_dcp(state: Mapping, folder: Path, **writer_options) -> Path:
    """``dcp.save`` in one process; ``writer_options`` go to ``FileSystemWriter`` (e.g. serialization_format)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is ... uninitialized, assuming a single process"
        if writer_options:
            dcp.save(dict(state), storage_writer=dcp.FileSystemWriter(str(folder), **writer_options), no_dist=True)
        else:
            dcp.save(dict(state), checkpoint_id=str(folder), no_dist=True)
    return folder


def save_sharded_dcp(state: Mapping[str, torch.Tensor], folder: Path, sharded: Mapping[str, int],
                     ranks: int = 2) -> Path:
    """Write ``state`` as ``ranks`` ranks would: tensors named in ``sharded`` split along that
    dimension (rank r holds the r-th piece, as ``torch.chunk`` cuts it), the others on rank 0."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [io.BytesIO() for _ in range(ranks)]
    items: dict[str, TensorStorageMetadata] = {}
    storage: dict[MetadataIndex, _StorageInfo] = {}
    for key, tensor in state.items():
        dim = sharded.get(key)
        pieces = [(0, tensor)] if dim is None else list(enumerate(torch.chunk(tensor, ranks, dim)))
        chunks = []
        start = 0
        for rank, piece in pieces:
            offsets = [0] * tensor.dim()
            if dim is not None:
                offsets[dim] = start
                start += piece.shape[dim]
            buf = files[rank]
            at = buf.tell()
            torch.save(piece.clone(), buf)  # each rank saves its own local shard
            chunks.append(ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=piece.shape))
            storage[MetadataIndex(key, offsets, len(chunks) - 1)] = _StorageInfo(f"__{rank}_0.distcp", at,
                                                                                  buf.tell() - at)
        items[key] = TensorStorageMetadata(TensorProperties(dtype=tensor.dtype), tensor.shape, chunks)
    for rank, buf in enumerate(files):
        (folder / f"__{rank}_0.distcp").write_bytes(buf.getvalue())
    meta = Metadata(state_dict_metadata=items, planner_data={k: (k,) for k in items}, storage_data=storage,
                    version="1.0.0")
    with open(folder / ".metadata", "wb") as fh:
        pickle.dump(meta, fh)
    return folder


def dcp_state(folder: Path) -> dict:
    """The reference reading: torch's ``dcp_to_torch_save``, then ``torch.load``."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = folder.parent / (folder.name + ".reference.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp_to_torch_save(str(folder), str(out))
    try:
        return torch.load(out, weights_only=True)
    finally:
        out.unlink()
