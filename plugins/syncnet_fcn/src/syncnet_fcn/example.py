"""The seed's four training strategies on synthetic tensors, built from mapper_core's pieces.

    python -m syncnet_fcn.example [--checkpoint syncnet_v2.model] [--steps 2] [--save DIR]

Without ``--checkpoint`` a SyncNet-shaped checkpoint is built from our own ``SyncNet``
with a fixed seed. Frames are small random clips; the point is the workflow, not accuracy.
Freezing uses freeze groups (BatchNorm statistics included), learning rates come from the
rules' ``param_groups``, and strategy 4 follows the rules' ``schedule`` through
:class:`~mapper_core.train.schedule.UnfreezeScheduler`. ``--save`` writes strategy 4's training
checkpoint (safetensors + JSON) at the end.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mapper_core.train import state as training_state
from mapper_core.train.apply import param_groups
from mapper_core.train.schedule import UnfreezeScheduler, Unfrozen

from .attention import SyncNetFCN_WithAttention
from .fcn import SyncNetFCN
from .models import make_syncnet_checkpoint
from .transfer import get_optimizer_param_groups, load_pretrained_syncnet, syncnet_rules, unfreeze_all_layers

FRAMES = 6  # → FRAMES - 4 = 2 feature steps


@dataclass(frozen=True)
class Run:
    """One strategy's outcome: losses, the trained objects, and the weights before training."""

    name: str
    losses: tuple[float, ...]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    before: dict[str, torch.Tensor] = field(repr=False)  # state dict right after loading
    unfrozen: tuple[Unfrozen, ...] = ()


def synthetic_batch(max_offset: int, batch: int = 1, seed: int = 0):
    """Random MFCC [B,1,13,4T], frames [B,3,T,224,224] and in-sync labels [B, T-4]."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, 1, 13, 4 * FRAMES, generator=g)
    video = torch.randn(batch, 3, FRAMES, 224, 224, generator=g)
    labels = torch.full((batch, FRAMES - 4), max_offset, dtype=torch.long)  # offset 0
    return audio, video, labels


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, max_offset: int,
                first_seed: int = 0) -> list[float]:
    """One epoch of ``steps`` optimizer steps; returns the losses. ``model.train()`` is safe:
    frozen BatchNorm layers stay in eval mode."""
    model.train()
    losses = []
    for step in range(steps):
        audio, video, labels = synthetic_batch(max_offset, seed=first_seed + step)
        optimizer.zero_grad()
        sync_probs, _, _ = model(audio, video)
        loss = nn.functional.nll_loss(torch.log(sync_probs.clamp_min(1e-8)), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _loaded(model: nn.Module, ckpt: Path, freeze: bool) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    load_pretrained_syncnet(model, ckpt, freeze_conv_layers=freeze, verbose=False)
    return model, {k: v.detach().clone() for k, v in model.state_dict().items()}


def frozen_conv(ckpt: Path, steps: int, max_offset: int) -> Run:
    """Strategy 1: load, freeze the conv trunks (and their BN statistics), train the new layers
    at the rules' ``new_layers`` learning rate."""
    model, before = _loaded(SyncNetFCN(max_offset=max_offset), ckpt, freeze=True)
    optimizer = torch.optim.Adam(param_groups(model, syncnet_rules(), trainable_only=True))
    return Run("frozen-conv", tuple(train_steps(model, optimizer, steps, max_offset)), model, optimizer, before)


def fine_tune(ckpt: Path, steps: int, max_offset: int) -> Run:
    """Strategy 2: after strategy 1's loading, unfreeze everything and fine-tune at 1e-4."""
    model, before = _loaded(SyncNetFCN(max_offset=max_offset), ckpt, freeze=True)
    unfreeze_all_layers(model, verbose=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return Run("fine-tune", tuple(train_steps(model, optimizer, steps, max_offset)), model, optimizer, before)


def differential_lr(ckpt: Path, steps: int, max_offset: int) -> Run:
    """Strategy 3: nothing frozen; the rules' param groups (pretrained conv 1e-5, new layers 1e-3)."""
    model, before = _loaded(SyncNetFCN_WithAttention(max_offset=max_offset), ckpt, freeze=False)
    optimizer = torch.optim.Adam(get_optimizer_param_groups(model, pretrained_lr=1e-5, new_layers_lr=1e-3))
    return Run("differential-lr", tuple(train_steps(model, optimizer, steps, max_offset)), model, optimizer, before)


def progressive(ckpt: Path, steps: int, max_offset: int, save: Path | None = None) -> Run:
    """Strategy 4: the rules' ``schedule``: new layers alone until the declared epoch, then the
    trunks join the SAME optimizer at ``lr_scale`` × the base lr; trains one epoch past the last step."""
    rules = syncnet_rules()
    model, before = _loaded(SyncNetFCN(max_offset=max_offset), ckpt, freeze=True)
    optimizer = torch.optim.Adam(param_groups(model, rules, trainable_only=True), lr=1e-3)
    scheduler = UnfreezeScheduler(model, optimizer, rules)
    epochs = max((s.epoch for s in rules.schedule), default=0) + 1
    losses: list[float] = []
    for epoch in range(epochs):
        scheduler.step(epoch)
        losses += train_steps(model, optimizer, steps, max_offset, first_seed=epoch * steps)
    if save is not None:
        training_state.save(save, model, optimizer, scheduler, epoch=epochs)
    return Run("progressive-unfreezing", tuple(losses), model, optimizer, before, tuple(scheduler.history))


STRATEGIES: dict[str, Callable[[Path, int, int], Run]] = {
    "frozen-conv": frozen_conv, "fine-tune": fine_tune,
    "differential-lr": differential_lr, "progressive-unfreezing": progressive,
}


def run_strategies(ckpt: Path, steps: int, max_offset: int, save: Path | None = None) -> dict[str, Run]:
    """Run the four strategies, one after the other, each on a freshly loaded model."""
    runs = {}
    for name, strategy in STRATEGIES.items():
        runs[name] = (strategy(ckpt, steps, max_offset, save) if strategy is progressive
                      else strategy(ckpt, steps, max_offset))
    return runs


def describe(run: Run) -> str:
    groups = ", ".join(f"{g.get('name', 'all')}@{g['lr']:g}" for g in run.optimizer.param_groups)
    losses = ", ".join(f"{x:.4f}" for x in run.losses[-3:])
    more = f" (last 3 of {len(run.losses)})" if len(run.losses) > 3 else ""
    return f"{run.name:24s} groups: {groups:40s} losses{more}: {losses}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncnet_fcn.example", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a real syncnet_v2.model (default: build one)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per epoch (default 2)")
    parser.add_argument("--max-offset", type=int, default=15)
    parser.add_argument("--save", type=Path, help="write strategy 4's training checkpoint into this folder")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or make_syncnet_checkpoint(Path(tmp) / "syncnet_example.model", seed=0)
        for run in run_strategies(ckpt, args.steps, args.max_offset, args.save).values():
            print(describe(run))
            for u in run.unfrozen:
                print(f"{'':24s} epoch {u.epoch}: unfroze {u.group}, {len(u.added)} tensors added at lr {u.lr:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
