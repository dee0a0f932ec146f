"""A fake 405B-parameter checkpoint: real headers, sparse data (a script, not a test).

    .venv/bin/python tests/benchmarks/make_fake_405b.py FOLDER [--shards 2000] [--dcp] [--ranks 8]

Llama-3.1-405B's shapes (126 layers, hidden 16384, FFN 53248, 8 KV heads of 128, vocabulary
128256, BF16), with each attention and MLP matrix stored as 8 tensor-parallel slices as a
Megatron-style export keeps them: 7,325 tensors, 405.9 B parameters, 811.7 GB. Written as

- ``FOLDER/st/model-XXXXX-of-NNNNN.safetensors`` + ``model.safetensors.index.json``: ``--shards``
  files whose headers are real and whose data areas are holes (``ftruncate``): they take a few
  MB of disk and read as zeros;
- with ``--dcp``, ``FOLDER/dcp``: a DCP ``.metadata`` of the same tensors, each saved in
  ``--ranks`` chunks along its first dimension (as FSDP saves them) across ``__R_0.distcp`` data
  files, also holes. Its chunks' byte ranges are not torch.save blobs: plan it, never convert it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LAYERS, HIDDEN, FFN, KV, VOCAB, TP = 126, 16384, 53248, 8 * 128, 128256, 8


def layout() -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every tensor, in checkpoint order."""
    out: list[tuple[str, tuple[int, ...]]] = []
    out += [(f"model.embed_tokens.{t}.weight", (VOCAB // TP, HIDDEN)) for t in range(TP)]
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        for name, rows, cols in (("self_attn.q_proj", HIDDEN, HIDDEN), ("self_attn.k_proj", KV, HIDDEN),
                                 ("self_attn.v_proj", KV, HIDDEN), ("mlp.gate_proj", FFN, HIDDEN),
                                 ("mlp.up_proj", FFN, HIDDEN)):
            out += [(f"{p}.{name}.{t}.weight", (rows // TP, cols)) for t in range(TP)]
        for name, rows, cols in (("self_attn.o_proj", HIDDEN, HIDDEN), ("mlp.down_proj", HIDDEN, FFN)):
            out += [(f"{p}.{name}.{t}.weight", (rows, cols // TP)) for t in range(TP)]
        out += [(f"{p}.input_layernorm.weight", (HIDDEN,)), (f"{p}.post_attention_layernorm.weight", (HIDDEN,))]
    out.append(("model.norm.weight", (HIDDEN,)))
    out += [(f"lm_head.{t}.weight", (VOCAB // TP, HIDDEN)) for t in range(TP)]
    return out


def write_safetensors(folder: Path, shards: int) -> int:
    from mapper_core.io.formats.writer import Entry, encode_header, library_order
    from mapper_core.io.formats.shards import shard_names
    from mapper_core.specs import TensorSpec

    entries = [Entry(k, TensorSpec("BF16", s), None) for k, s in layout()]  # type: ignore[arg-type]
    total = sum(e.spec.nbytes for e in entries)
    groups: list[list] = [[] for _ in range(shards)]
    target, size, g = total / shards, 0, 0
    for e in entries:  # consecutive groups of about total/shards bytes
        if groups[g] and size + e.spec.nbytes > target * (g + 1) and g < shards - 1:
            g += 1
        groups[g].append(e)
        size += e.spec.nbytes
    groups = [x for x in groups if x]
    folder.mkdir(parents=True, exist_ok=True)
    files, index = shard_names(folder / "model.safetensors.index.json", len(groups))
    weight_map = {}
    for path, group in zip(files, groups):
        header, _ = encode_header(library_order(group), {"format": "pt"})
        with open(path, "wb") as fh:
            fh.write(header)
            fh.truncate(len(header) + sum(e.spec.nbytes for e in group))  # the data: a hole
        weight_map.update({e.key: path.name for e in group})
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return len(groups)


def write_dcp(folder: Path, ranks: int) -> int:
    import pickle

    import torch
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (ChunkStorageMetadata, Metadata, MetadataIndex,
                                                       TensorProperties, TensorStorageMetadata)

    folder.mkdir(parents=True, exist_ok=True)
    ends = [0] * ranks
    items, storage = {}, {}
    blob_overhead = 1536  # about what torch.save adds around a chunk's bytes
    for key, shape in layout():
        rows = shape[0]
        chunks, start = [], 0
        for r in range(ranks):
            n = rows // ranks + (1 if r < rows % ranks else 0)
            if n == 0:
                continue
            offsets = torch.Size([start] + [0] * (len(shape) - 1))
            sizes = torch.Size([n, *shape[1:]])
            chunks.append(ChunkStorageMetadata(offsets, sizes))
            nbytes = 2 * n * (shape[1] if len(shape) > 1 else 1) + blob_overhead
            storage[MetadataIndex(key, offsets, len(chunks) - 1)] = _StorageInfo(f"__{r}_0.distcp", ends[r], nbytes)
            ends[r] += nbytes
            start += n
        items[key] = TensorStorageMetadata(TensorProperties(dtype=torch.bfloat16), torch.Size(shape), chunks)
    for r, end in enumerate(ends):
        with open(folder / f"__{r}_0.distcp", "wb") as fh:
            fh.truncate(end)
    meta = Metadata(items, planner_data={k: (k,) for k in items}, storage_data=storage, version="1.0.0")
    with open(folder / ".metadata", "wb") as fh:
        pickle.dump(meta, fh)
    return len(storage)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--shards", type=int, default=2000)
    ap.add_argument("--dcp", action="store_true", help="also write a DCP folder of the same tensors")
    ap.add_argument("--ranks", type=int, default=8)
    args = ap.parse_args(argv)
    tensors = layout()
    params = sum(_numel(s) for _, s in tensors)
    n = write_safetensors(args.folder / "st", args.shards)
    print(f"{args.folder / 'st'}: {len(tensors)} tensors, {params / 1e9:.1f} B parameters, "
          f"{2 * params / 1e9:.1f} GB (sparse), {n} shards")
    if args.dcp:
        chunks = write_dcp(args.folder / "dcp", args.ranks)
        print(f"{args.folder / 'dcp'}: .metadata with {chunks} chunks over {args.ranks} data files (sparse)")
    return 0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


if __name__ == "__main__":
    sys.exit(main())
