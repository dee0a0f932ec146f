"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder holding two files:

- ``training_state.safetensors``: the model's state dict (``model/<key>``), the optimizer's
  state tensors (``optimizer/<param name>/<key>``), other tensors (``rng/...``, ``extra/...``);
- ``training_state.json``: optimizer parameter groups (hyper-parameters and member
  parameters BY NAME, so groups the :class:`~.schedule.UnfreezeScheduler` added come back),
  the scheduler's position, the epoch, frozen groups, every parameter's ``requires_grad``,
  every module's training flag, which norm layers have frozen statistics, RNG states, and
  the SHA-256 of the tensor file (a torn pair is refused on load).

Both are written through temporaries and renamed into place, tensors first. Nothing here
unpickles: tensors go through ``safetensors.torch``, the rest through ``json``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io.atomic import AtomicFiles
from ..errors import BadInputError, CheckpointError
from ..rules.ruleset import RuleSet

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT = "mapper-core training state"
VERSION = 1
TENSORS = "training_state.safetensors"
META = "training_state.json"


@dataclass(frozen=True)
class Resumed:
    """What :func:`load` restored besides the objects it was given."""

    epoch: int
    extra: Any
    frozen_groups: tuple[str, ...]
    path: Path


class _Encoder:
    """JSON values with tensors moved aside: a tensor becomes ``{"$tensor": key}``, a tuple ``{"$tuple": [...]}``."""

    def __init__(self, tensors: dict[str, "torch.Tensor"] | None = None):
        self.tensors = {} if tensors is None else tensors

    def encode(self, value: Any, key: str) -> Any:
        import torch

        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, torch.Tensor):
            # clone: safetensors refuses tensors that share storage (tied weights, views)
            self.tensors[key] = value.detach().to("cpu", copy=True).contiguous()
            return {"$tensor": key}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, f"{key}/{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{key}/{i}") for i, v in enumerate(value)]
        if isinstance(value, dict) and all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: self.encode(v, f"{key}/{k}") for k, v in value.items()}
        raise CheckpointError(f"{key}: cannot store a {type(value).__name__} in a training checkpoint "
                              "(JSON values, tuples, tensors and dicts with text keys only); convert it first")

    def decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if isinstance(value, dict):
            if set(value) == {"$tensor"}:
                try:
                    return self.tensors[value["$tensor"]]
                except KeyError:
                    raise CheckpointError(f"tensor '{value['$tensor']}' is named in {META} but missing "
                                          f"from {TENSORS}; the checkpoint is damaged") from None
            if set(value) == {"$tuple"}:
                return tuple(self.decode(v) for v in value["$tuple"])
            return {k: self.decode(v) for k, v in value.items()}
        return value


def _param_names(model: "nn.Module") -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _group_names(optimizer: "torch.optim.Optimizer", names: dict[int, str]) -> list[list[str]]:
    try:
        return [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    except KeyError:
        raise CheckpointError("the optimizer holds a parameter that is not in the model; "
                              "checkpoints name parameters by their model name, so build the "
                              "optimizer from this model's parameters") from None


def save(directory: str | Path, model: "nn.Module", optimizer: "torch.optim.Optimizer",
         scheduler: Any | None = None, epoch: int = 0, extra: Any = None, *,
         ruleset: RuleSet | None = None) -> Path:
    """Write a training checkpoint into ``directory`` (created if missing); returns it.

    ``scheduler`` is anything with ``state_dict()`` / ``load_state_dict()`` (an
    :class:`~.schedule.UnfreezeScheduler`, a torch LR scheduler). ``ruleset`` (default: the
    scheduler's) names the freeze groups recorded as frozen. ``extra`` is JSON data (tensors allowed).
    """
    import torch
    from safetensors.torch import save_file

    from .freeze import frozen_norm_layers

    ruleset = ruleset if ruleset is not None else getattr(scheduler, "ruleset", None)
    enc = _Encoder()
    for key, value in model.state_dict().items():
        enc.encode(value, f"model/{key}")
    names = _param_names(model)
    groups = _group_names(optimizer, names)
    flat = [n for g in groups for n in g]
    state = optimizer.state_dict()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": epoch,
        "extra": enc.encode(extra, "extra"),
        "model": {
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "training": {n: m.training for n, m in model.named_modules()},
            "frozen_norm_layers": frozen_norm_layers(model),
            "frozen_groups": _frozen_groups(model, ruleset),
        },
        "optimizer": {
            "type": type(optimizer).__name__,
            "param_groups": [
                {"params": members, "options": enc.encode({k: v for k, v in g.items() if k != "params"},
                                                          f"optimizer_groups/{i}")}
                for i, (members, g) in enumerate(zip(groups, state["param_groups"]))
            ],
            "state": {flat[i]: enc.encode(s, f"optimizer/{flat[i]}") for i, s in state["state"].items()},
        },
        "scheduler": None if scheduler is None else enc.encode(scheduler.state_dict(), "scheduler"),
        "rng": {"torch": enc.encode(torch.get_rng_state(), "rng/torch"),
                "python": enc.encode(random.getstate(), "rng/python")},
    }
    from safetensors import SafetensorError

    directory = Path(directory)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with AtomicFiles() as out:
            out.create(directory / TENSORS)
            temp = out.temp_of(directory / TENSORS)
            save_file(enc.tensors, str(temp), metadata={"format": FORMAT})
            _settle(temp)
            meta["tensors_sha256"] = _sha256(temp)
            fd = out.create(directory / META)
            data = json.dumps(meta, indent=1).encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            out.commit()  # tensors renamed first: a JSON file never names tensors that are not there
    except (OSError, SafetensorError) as exc:  # a full disk, a read-only folder: the temporaries are gone
        if created:
            _remove_empty(directory)
        why = f"{exc.strerror} ({exc.filename})" if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInputError(f"{directory}: cannot write the training checkpoint: {why}; nothing was written") from None
    return directory


def _remove_empty(directory: Path) -> None:
    """The folder ``save`` made for a checkpoint it could not write (left alone if anything is in it)."""
    try:
        directory.rmdir()
    except OSError:
        pass


def _settle(path: Path) -> None:
    """save_file replaces the file it is given (a new inode, mode 0600), so the descriptor
    AtomicFiles fsyncs is not this file's: fsync it here and give it the usual mode."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _frozen_groups(model: "nn.Module", ruleset: RuleSet | None) -> list[str]:
    """Freeze groups all of whose (non-empty) parameters are frozen."""
    if ruleset is None:
        return []
    params = dict(model.named_parameters())
    result = []
    for g in ruleset.freeze:  # a question, not a request: a group this model lacks is simply not frozen
        members = [n for n in params if g.matches(n)]
        if members and not any(params[n].requires_grad for n in members):
            result.append(g.name)
    return result


def load(directory: str | Path, model: "nn.Module", optimizer: "torch.optim.Optimizer",
         scheduler: Any | None = None, *, restore_rng: bool = True) -> Resumed:
    """Restore a checkpoint written by :func:`save` into freshly built objects.

    The optimizer must be built as it was at the start of training (the same groups in the
    same order); groups added later (by the unfreeze scheduler) are added back here.
    Restores tensors, ``requires_grad``, frozen norm layers and training flags, the
    scheduler's position and (unless ``restore_rng=False``) the torch and Python RNG states.
    Raises CheckpointError when the files are missing, torn, or do not fit the objects.
    """
    import torch
    from safetensors.torch import load_file

    directory = Path(directory)
    meta, tensors = _read(directory, load_file)
    enc = _Encoder(tensors)
    _restore_model(directory, model, meta["model"], tensors)
    _restore_optimizer(directory, model, optimizer, meta["optimizer"], enc)
    if scheduler is not None:
        if meta.get("scheduler") is None:
            raise CheckpointError(f"{directory / META}: no scheduler state was saved; resume without a scheduler "
                                  "or from a checkpoint saved with one")
        scheduler.load_state_dict(enc.decode(meta["scheduler"]))
    if restore_rng:
        torch.set_rng_state(enc.decode(meta["rng"]["torch"]))
        version, internal, gauss = enc.decode(meta["rng"]["python"])
        random.setstate((version, tuple(internal), gauss))
    return Resumed(int(meta["epoch"]), enc.decode(meta["extra"]),
                   tuple(meta["model"].get("frozen_groups", ())), directory)


def _read(directory: Path, load_file: Any) -> tuple[dict, dict]:
    meta_path, tensor_path = directory / META, directory / TENSORS
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: not found; is {directory} a folder written by training_state.save?") \
            from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: cannot read it as JSON ({exc}); the checkpoint is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{meta_path}: not a '{FORMAT}' file of version {VERSION}; "
                              "write it with mapper_core.training_state.save")
    if not tensor_path.is_file():
        raise CheckpointError(f"{tensor_path}: not found; the checkpoint folder is incomplete")
    if _sha256(tensor_path) != meta.get("tensors_sha256"):
        raise CheckpointError(f"{tensor_path}: its SHA-256 differs from the one in {META} (a torn or mixed "
                              "checkpoint); resume from another checkpoint")
    return meta, load_file(str(tensor_path))


def _restore_model(directory: Path, model: "nn.Module", saved: dict, tensors: dict) -> None:
    from .freeze import freeze_stats, stats_frozen, unfreeze_stats

    state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{directory / TENSORS}: the model does not fit the checkpoint: missing "
                              f"{missing[:5] or 'none'}, unexpected {unexpected[:5] or 'none'}; "
                              "build the same model class with the same arguments")
    model.load_state_dict(state)
    for n, p in model.named_parameters():
        p.requires_grad_(bool(saved["requires_grad"].get(n, p.requires_grad)))
    frozen = set(saved["frozen_norm_layers"])
    for n, m in model.named_modules():
        flag = bool(saved["training"].get(n, m.training))
        if n in frozen:
            freeze_stats(m)
        elif stats_frozen(m):
            unfreeze_stats(m, flag)
        m.training = flag


def _restore_optimizer(directory: Path, model: "nn.Module", optimizer: "torch.optim.Optimizer",
                       saved: dict, enc: _Encoder) -> None:
    where = directory / META
    if saved["type"] != type(optimizer).__name__:
        raise CheckpointError(f"{where}: the checkpoint holds a {saved['type']} state, but the optimizer is a "
                              f"{type(optimizer).__name__}; build the same optimizer")
    groups = saved["param_groups"]
    current = _group_names(optimizer, _param_names(model))
    for i, members in enumerate(current):
        if i >= len(groups) or members != groups[i]["params"]:
            raise CheckpointError(
                f"{where}: optimizer group {i} holds {len(members)} parameter(s) that differ from the saved "
                f"group ({len(groups[i]['params']) if i < len(groups) else 'none'} saved); build the optimizer "
                "as at the start of training: groups added later by the scheduler are restored from the file")
    params = dict(model.named_parameters())
    for g in groups[len(current):]:
        unknown = [n for n in g["params"] if n not in params]
        if unknown:
            raise CheckpointError(f"{where}: saved optimizer parameters {unknown[:5]} are not in the model; "
                                  "build the same model")
        optimizer.add_param_group({**enc.decode(g["options"]), "params": [params[n] for n in g["params"]]})
    index = {n: i for i, n in enumerate(n for g in groups for n in g["params"])}
    optimizer.load_state_dict({
        "state": {index[n]: enc.decode(s) for n, s in saved["state"].items()},
        "param_groups": [{**enc.decode(g["options"]), "params": [index[n] for n in g["params"]]} for g in groups],
    })
