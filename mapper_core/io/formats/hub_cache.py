"""The Hugging Face hub's cache layout, where a checkpoint's files are links into a blob store.

``huggingface_hub`` keeps a repository as ``models--ORG--NAME/blobs/<hash>`` (the bytes) and
``models--ORG--NAME/snapshots/<revision>/<file name>`` (a relative link to its blob, e.g.
``../../blobs/<hash>``). An index in a snapshot therefore names shards whose real paths are
outside the snapshot's folder. Those links, and only those, are read like files beside the index:
the real path must be a file directly in the ``blobs`` folder of the same repository, found with
every link resolved, so a link that leaves the repository is still refused.
"""
from __future__ import annotations

import os
from pathlib import Path


def in_own_blob_store(folder: Path, real: Path) -> bool:
    """Whether ``real`` (a resolved path) is a blob of the hub cache repository whose snapshot is
    ``folder`` (the folder of the index or checkpoint that names it, as given, not resolved)."""
    folder = Path(os.path.abspath(folder))  # links kept: a snapshot is found by the path it was given
    snapshots = folder.parent
    if snapshots.name != "snapshots":
        return False
    blobs = Path(os.path.realpath(snapshots.parent / "blobs"))
    return real.parent == blobs
