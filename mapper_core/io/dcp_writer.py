"""Writing a DCP folder (``torch.distributed.checkpoint``) from any readable checkpoint.

The folder is what ``dcp.save`` in one process writes: one data file ``__0_0.distcp`` holding
each tensor as a ``torch.save`` blob, one after the other, and ``.metadata``, DCP's own
``Metadata`` dataclass (built from torch's classes and pickled as DCP pickles it), naming each
tensor's dtype, size, one whole chunk, and its byte range. It loads with
``torch.distributed.checkpoint.load`` (a training run seeded from a converted or remapped
checkpoint). Tensors are fetched, written and dropped one at a time. Tied weights (aliases) are
stored once: both keys' storage entries point at the same bytes.

Written through :class:`~mapper_core.io.atomic.AtomicFiles`: the data file is renamed into
place first and ``.metadata`` last, so a folder without ``.metadata`` is never a checkpoint. Without
``force`` neither rename replaces anything, even a file another run put there meanwhile (the loser
of two runs to one folder gets :class:`~mapper_core.errors.OutputExistsError`), and temporaries that
killed runs left in the folder are named (:func:`~mapper_core.io.atomic.stale_temps`), and removed
with ``clean_stale``. With ``force`` over an earlier checkpoint (say one ``dcp.save`` wrote on two
ranks), its data files that the new ``.metadata`` does not use are removed once that is in place,
and anything else in the folder is named in a warning (:mod:`~mapper_core.io.dcp_earlier`).
"""
from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import CheckpointError, OutputExistsError, VerifyError
from .atomic import AtomicFiles, _same_file, remove_stale, stale_temps
from .dcp_earlier import earlier_data_files, remove_earlier, warn_others
from .formats.base import FileRange
from .formats.dcp_metadata import METADATA_NAME
from .formats.writer import Entry
from .torch_dtypes import NAME_TO_TORCH, dtype_name

DATA_NAME = "__0_0.distcp"
DCP_VERSION = "1.0.0"  # the metadata version torch 2.x writes; dcp.load accepts it


def check_dcp_destination(dst: Path, sources: list[Path], force: bool) -> bool:
    """Refuse a DST that is a file, a source, or an existing DCP folder without ``force``.
    Returns whether the folder must be created."""
    if dst.exists() and not dst.is_dir():
        raise OutputExistsError(f"{dst}: a DCP checkpoint is a folder, and this is a file; name a folder")
    for src in sources:
        if _same_file(dst / METADATA_NAME, src) or _same_file(dst / DATA_NAME, src):
            raise OutputExistsError(f"{dst}: holds the source checkpoint {src}; write the output to another folder")
    if (dst / METADATA_NAME).exists() and not force:
        raise OutputExistsError(f"{dst}: already holds a DCP checkpoint; pass --force (Python: force=True) to replace it")
    if (dst / DATA_NAME).exists() and not force:
        raise OutputExistsError(f"{dst}: already holds {DATA_NAME} (without .metadata: a write that did not finish, "
                                "or one still going); pass --force (Python: force=True) to replace it")
    if not dst.parent.is_dir():
        raise OutputExistsError(f"{dst}: the folder {dst.parent} does not exist; create it first")
    return not dst.exists()


def write_dcp(dst: Path, entries: list[Entry], aliases: dict[str, str], step: Callable[[int, str], None],
              verify: bool, sources: list[Path], force: bool, clean_stale: bool = False,
              byte_items: dict[str, FileRange] | None = None
              ) -> tuple[list[Path], int | None, list[Path], list[Path]]:
    """Write ``entries`` (and ``aliases``: alias → stored key) as a DCP folder at ``dst``.

    ``byte_items`` (key → byte range of a source DCP data file) are non-tensor items copied over as
    they are, as DCP's own ``BytesStorageMetadata`` items: never unpickled here, ``dcp.load``
    reads them back as it read the source's.

    Returns the files written (data file, then ``.metadata``), with ``verify`` how many tensors were
    read back and compared bit for bit before anything was put in place, the stale temporaries
    found (removed with ``clean_stale``), and the replaced checkpoint's data files removed."""
    create = check_dcp_destination(dst, sources, force)
    earlier = earlier_data_files(dst) if force else ()  # before the commit replaces its .metadata
    if create:
        try:
            dst.mkdir()
        except FileExistsError:  # another run made it meanwhile: its files are never replaced below
            create = False
    data_path, meta_path = dst / DATA_NAME, dst / METADATA_NAME
    stale = stale_temps(data_path) + stale_temps(meta_path)
    if clean_stale:
        remove_stale(stale)
    try:
        with AtomicFiles(replace=force) as out:
            fd = out.create(data_path)
            placed: dict[str, tuple[int, int]] = {}
            with open(fd, "wb", closefd=False) as fh:  # AtomicFiles owns the descriptor
                for e in entries:
                    tensor = _compact(_tensor_of(e))
                    start = fh.tell()
                    _save(tensor, fh)
                    placed[e.key] = (start, fh.tell() - start)
                    step(e.spec.nbytes, e.key)
                    del tensor
                for key, where in (byte_items or {}).items():
                    start = fh.tell()
                    _copy_range(where, key, fh)
                    placed[key] = (start, fh.tell() - start)
            checked = _verify(out.temp_of(data_path), entries, placed) if verify else None
            specs = {e.key: e.spec for e in entries}
            for alias, key in aliases.items():
                specs[alias], placed[alias] = specs[key], placed[key]
            meta_fd = out.create(meta_path)
            with open(meta_fd, "wb", closefd=False) as fh:
                pickle.dump(_metadata(specs, placed, list(byte_items or ())), fh)
            out.commit()
    except BaseException:
        if create:
            try:
                dst.rmdir()  # only when empty: nothing of ours is left in it
            except OSError:
                pass
        raise
    written = [data_path, meta_path]
    removed = remove_earlier(dst, earlier, written, sources)
    warn_others(dst, written)
    return written, checked, stale, removed


def _save(tensor: Any, fh: Any) -> None:
    """``torch.save`` into ``fh``; a failed write is an OSError, as from any other writer."""
    import torch

    try:
        torch.save(tensor, fh)
    except RuntimeError as exc:
        # torch's zip writer meets the OSError (a full disk, an I/O error) and raises, while handling it,
        # "[enforce fail at inline_container.cc] unexpected pos ..."; the OSError is what went wrong
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError):
            raise cause from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OSError(errno.EIO, f"torch.save failed: {first}") from None


def _copy_range(where: FileRange, key: str, fh: Any) -> None:
    """The bytes of a source's non-tensor item, copied into ``fh`` a bounded buffer at a time."""
    with open(where.path, "rb") as src:
        src.seek(where.start)
        left = where.nbytes
        while left:
            chunk = src.read(min(left, 8 << 20))
            if not chunk:
                raise CheckpointError(f"{where.path}: non-tensor item '{key}': the file ended before byte {where.end}; "
                                      "the data file is truncated")
            fh.write(chunk)
            left -= len(chunk)


def _tensor_of(e: Entry) -> Any:
    """The entry's tensor: fetched from its reader, or decoded from its raw byte range."""
    if not isinstance(e.data, FileRange):
        tensor = e.data()
        got = dtype_name(tensor.dtype, e.key)
        if (got, tuple(tensor.shape)) != (e.spec.dtype, tuple(e.spec.shape)):
            raise CheckpointError(f"tensor '{e.key}' is {got} {list(tensor.shape)} but the plan expected "
                                  f"{e.spec.dtype} {list(e.spec.shape)}; did the file change while converting?")
        return tensor
    import torch

    r = e.data
    buf = bytearray(r.nbytes)
    with open(r.path, "rb") as fh:
        fh.seek(r.start)
        if fh.readinto(buf) != r.nbytes:
            raise CheckpointError(f"{r.path}: '{e.key}': the file ended before byte {r.end}; was it truncated?")
    dtype = NAME_TO_TORCH[e.spec.dtype]
    if not buf:
        return torch.empty(e.spec.shape, dtype=dtype)
    return torch.frombuffer(buf, dtype=torch.uint8).view(dtype).reshape(e.spec.shape)


def _compact(tensor: Any) -> Any:
    """A tensor whose storage is exactly its elements: torch.save writes a view's whole storage."""
    tensor = tensor.detach().cpu()
    whole = tensor.untyped_storage().nbytes()
    if tensor.is_contiguous() and tensor.storage_offset() == 0 and whole == tensor.numel() * tensor.element_size():
        return tensor
    return tensor.contiguous().clone() if tensor.is_contiguous() else tensor.contiguous()


def _metadata(specs: dict, placed: dict[str, tuple[int, int]], byte_keys: Iterable[str] = ()) -> Any:
    """DCP's own Metadata for one rank's single data file, as ``FileSystemWriter.finish`` builds it."""
    import torch
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (BytesStorageMetadata, ChunkStorageMetadata, Metadata,
                                                       MetadataIndex, StorageMeta, TensorProperties,
                                                       TensorStorageMetadata)

    items, storage = {}, {}
    for key, spec in specs.items():
        zeros = torch.Size([0] * len(spec.shape))
        size = torch.Size(spec.shape)
        items[key] = TensorStorageMetadata(TensorProperties(dtype=NAME_TO_TORCH[spec.dtype]), size,
                                           [ChunkStorageMetadata(offsets=zeros, sizes=size)])
        start, length = placed[key]
        storage[MetadataIndex(key, zeros, 0)] = _StorageInfo(DATA_NAME, start, length)
    for key in byte_keys:  # what DCP's planner records for a non-tensor item: no offset, no index
        items[key] = BytesStorageMetadata()
        storage[MetadataIndex(key)] = _StorageInfo(DATA_NAME, *placed[key])
    return Metadata(state_dict_metadata=items, planner_data={k: (k,) for k in items}, storage_data=storage,
                    storage_meta=StorageMeta(), version=DCP_VERSION)


def _verify(data: Path, entries: list[Entry], placed: dict[str, tuple[int, int]]) -> int:
    """Read every blob back from the temporary data file and compare it with its source, bit for bit."""
    import torch

    from .formats.dcp import FileWindow

    fd = os.open(data, os.O_RDONLY)
    try:
        for e in entries:
            start, length = placed[e.key]
            back = torch.load(FileWindow(fd, start, length), map_location="cpu", weights_only=True)
            want = _compact(_tensor_of(e))
            if back.dtype != want.dtype or back.shape != want.shape or not torch.equal(
                    back.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)):
                raise VerifyError(f"{data}: '{e.key}' read back differs from its source; nothing was written")
    finally:
        os.close(fd)
    return len(entries)
