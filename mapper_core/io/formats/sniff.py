"""What a file really is, from its first bytes: so a file with the wrong name is named for what it holds.

A torch checkpoint renamed ``model.safetensors`` used to fail as "header too large"; a GGUF file
given as safetensors, as a header length of 14 GB. :func:`what_is` recognises the formats people
mix up (torch zip and legacy pickles, TorchScript, GGUF, ONNX, NumPy, HDF5, plain pickles and
zips) from a few bytes and the zip directory, reading no tensor data and running nothing.
:func:`not_there` says why a path names no file: none there, or a symbolic link to nothing.
"""
from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path

from ...file_magic import ZIP, kind_of_head

_DAMAGED_ZIP = "a truncated or damaged zip archive"


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError, EOFError):  # e.g. an undecodable name
        return _DAMAGED_ZIP
    if any(n.endswith("constants.pkl") for n in names):
        return "a TorchScript archive (torch.jit.save)"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "a torch zip checkpoint (torch.save)"
    if names and all(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive"
    return ZIP


def what_is(path: Path) -> str | None:
    """A short description of the file's real format (``"a GGUF file"``), or None when not recognised."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    kind = kind_of_head(head)
    return _zip_kind(path) if kind == ZIP else kind


def advice(kind: str, path: Path) -> str:
    """What to do with a file of ``kind`` (from :func:`what_is`) at ``path``."""
    if kind.startswith(("a torch", "a legacy torch")):
        if path.name.lower().endswith(".safetensors"):
            return "rename it to .pt (torch.load reads any file named *.safetensors as safetensors) and run again"
        return "read it as a torch checkpoint: pass --format torch, or leave --format out"
    if kind == _DAMAGED_ZIP:
        return ("it starts like a zip (a torch checkpoint is one) but its zip directory, at the end of the file, is "
                "missing or unreadable: an interrupted download or copy cuts it off; fetch or copy the file again")
    if kind.startswith("a TorchScript"):
        return "load it with torch.jit.load and torch.save(module.state_dict(), PATH) first"
    return ("mapper-core reads it only through a format plugin that knows it (`mapper plugins` lists the "
            "formats); otherwise convert it to safetensors or a torch checkpoint with its own tools first")


def not_there(path: Path) -> str | None:
    """Why ``path`` names no file or folder, as an error message naming it (None when it exists): a
    symbolic link is named as one, with where it points, as the output side does."""
    try:
        os.stat(path)
        return None
    except OSError as exc:
        if not os.path.islink(path):
            if exc.errno == errno.ENOENT:
                return f"{path}: no such file; check the path"
            return None  # another failure (permissions, a name too long): the reader says what it is
        target = os.readlink(path)
        if exc.errno == errno.ELOOP:
            return (f"{path}: is a symbolic link to {target}, which leads back to itself (a loop of links); "
                    "fix the link to point to the checkpoint")
        end = os.path.realpath(path)
        through = f", itself a link, ending at {end}" if os.path.islink(os.path.join(os.path.dirname(path), target)) else ""
        return (f"{path}: is a symbolic link to {target}{through}, which does not exist (a dangling link); "
                "fix the link to point to the checkpoint, or give the checkpoint's own path")
