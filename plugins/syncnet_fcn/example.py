"""The seed's four training strategies, each a few optimizer steps on synthetic tensors.

    python -m syncnet_fcn.example [--checkpoint syncnet_v2.model] [--steps 2]

Without ``--checkpoint`` a SyncNet-shaped checkpoint is built from our own ``SyncNet``
with a fixed seed. Frames are small random clips; the point is the workflow, not accuracy.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .fcn import SyncNetFCN, SyncNetFCN_WithAttention
from .models import make_syncnet_checkpoint
from .transfer import get_optimizer_param_groups, load_pretrained_syncnet, unfreeze_all_layers

FRAMES = 6  # → FRAMES - 4 = 2 feature steps


def synthetic_batch(max_offset: int, batch: int = 1, seed: int = 0):
    """Random MFCC [B,1,13,4T], frames [B,3,T,224,224] and in-sync labels [B, T-4]."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, 1, 13, 4 * FRAMES, generator=g)
    video = torch.randn(batch, 3, FRAMES, 224, 224, generator=g)
    labels = torch.full((batch, FRAMES - 4), max_offset, dtype=torch.long)  # offset 0
    return audio, video, labels


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, max_offset: int) -> list[float]:
    """A few optimizer steps; returns the losses."""
    model.train()
    losses = []
    for step in range(steps):
        audio, video, labels = synthetic_batch(max_offset, seed=step)
        optimizer.zero_grad()
        sync_probs, _, _ = model(audio, video)
        loss = nn.functional.nll_loss(torch.log(sync_probs.clamp_min(1e-8)), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def frozen_conv(ckpt: Path, steps: int, max_offset: int) -> list[float]:
    """Strategy 1: load, freeze conv trunks, train only the new layers at 1e-3."""
    model = SyncNetFCN(max_offset=max_offset)
    load_pretrained_syncnet(model, ckpt, freeze_conv_layers=True, verbose=False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return train_steps(model, optimizer, steps, max_offset)


def fine_tune(ckpt: Path, steps: int, max_offset: int) -> list[float]:
    """Strategy 2: after strategy 1, unfreeze everything and fine-tune at 1e-4."""
    model = SyncNetFCN(max_offset=max_offset)
    load_pretrained_syncnet(model, ckpt, freeze_conv_layers=True, verbose=False)
    unfreeze_all_layers(model, verbose=False)
    return train_steps(model, torch.optim.Adam(model.parameters(), lr=1e-4), steps, max_offset)


def differential_lr(ckpt: Path, steps: int, max_offset: int) -> list[float]:
    """Strategy 3: nothing frozen; pretrained conv at 1e-5, new layers at 1e-3."""
    model = SyncNetFCN_WithAttention(max_offset=max_offset)
    load_pretrained_syncnet(model, ckpt, freeze_conv_layers=False, verbose=False)
    optimizer = torch.optim.Adam(get_optimizer_param_groups(model, pretrained_lr=1e-5, new_layers_lr=1e-3))
    return train_steps(model, optimizer, steps, max_offset)


def progressive(ckpt: Path, steps: int, max_offset: int) -> list[float]:
    """Strategy 4: phase 1 frozen at 1e-3, then unfreeze all and continue at 1e-4."""
    model = SyncNetFCN(max_offset=max_offset)
    load_pretrained_syncnet(model, ckpt, freeze_conv_layers=True, verbose=False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = train_steps(model, optimizer, steps, max_offset)
    unfreeze_all_layers(model, verbose=False)
    return losses + train_steps(model, torch.optim.Adam(model.parameters(), lr=1e-4), steps, max_offset)


STRATEGIES: dict[str, Callable[[Path, int, int], list[float]]] = {
    "frozen-conv": frozen_conv, "fine-tune": fine_tune,
    "differential-lr": differential_lr, "progressive-unfreezing": progressive,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncnet_fcn.example", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a real syncnet_v2.model (default: build one)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per phase (default 2)")
    parser.add_argument("--max-offset", type=int, default=15)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or make_syncnet_checkpoint(Path(tmp) / "syncnet_example.model", seed=0)
        for name, strategy in STRATEGIES.items():
            losses = strategy(ckpt, args.steps, args.max_offset)
            print(f"{name:24s} losses: " + ", ".join(f"{x:.4f}" for x in losses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
