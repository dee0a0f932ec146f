"""The original SyncNet (syncnet_python's ``S``) and a builder for SyncNet-shaped checkpoints.

The trunk builders ``audio_trunk`` and ``video_trunk`` are the single definition of the
conv layouts: ``SyncNet`` uses them as ``netcnnaud`` / ``netcnnlip`` and the FCN encoders use
them as ``conv_layers``, so index N of one is index N of the other by construction.

Shapes (B = batch):

- ``netcnnaud``: MFCC window [B, 1, 13, 20] (13 coefficients × 20 columns at 100 Hz)
  → [B, 512, 1, 1]; ``netfcaud`` → [B, num_layers_in_fc_layers].
- ``netcnnlip``: mouth crops [B, 3, 5, 224, 224] (5 frames at 25 fps) → [B, 512, 1, 1, 1];
  ``netfclip`` → [B, num_layers_in_fc_layers].

The state dict has 102 entries and 13,640,270 values (num_batches_tracked included), with
the original names, so the real ``syncnet_v2.model`` loads with ``load_state_dict``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# One 5-frame video window (25 fps) pairs with 20 MFCC columns (100 Hz): 4 columns per frame.
VIDEO_WINDOW = 5
AUDIO_WINDOW = 20
MFCC_PER_FRAME = 4
MFCC_BINS = 13
FRAME_SIZE = 224

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def audio_trunk() -> nn.Sequential:
    """The original ``netcnnaud``: [B, 1, 13, W] → [B, 512, 1, W'] (W = 20 gives W' = 1)."""
    return nn.Sequential(
        nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
        nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
        nn.BatchNorm2d(192),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
        nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
        nn.BatchNorm2d(384),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
        nn.BatchNorm2d(256),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
        nn.BatchNorm2d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
        nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
        nn.BatchNorm2d(512),
        nn.ReLU(),
    )


def video_trunk() -> nn.Sequential:
    """The original ``netcnnlip``: [B, 3, T, 224, 224] → [B, 512, T − 4, 1, 1]."""
    return nn.Sequential(
        nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
        nn.BatchNorm3d(96),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
        nn.BatchNorm3d(512),
        nn.ReLU(inplace=True),
    )


def fc_head(out_features: int) -> nn.Sequential:
    """The original ``netfcaud`` / ``netfclip``: [B, 512] → [B, out_features]."""
    return nn.Sequential(
        nn.Linear(512, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, out_features),
    )


class SyncNet(nn.Module):
    """The original SyncNet with its original state-dict names and shapes."""

    def __init__(self, num_layers_in_fc_layers: int = 1024):
        super().__init__()
        # Attribute order fixes the state-dict order; it follows the original source.
        self.netcnnaud = audio_trunk()
        self.netfcaud = fc_head(num_layers_in_fc_layers)
        self.netfclip = fc_head(num_layers_in_fc_layers)
        self.netcnnlip = video_trunk()

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """MFCC window [B, 1, 13, 20] → audio embedding [B, num_layers_in_fc_layers]."""
        mid = self.netcnnaud(x)
        return self.netfcaud(mid.reshape(mid.size(0), -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """Frames [B, 3, 5, 224, 224] → video embedding [B, num_layers_in_fc_layers]."""
        return self.netfclip(self.forward_lipfeat(x))

    def forward_lipfeat(self, x: torch.Tensor) -> torch.Tensor:
        """Frames [B, 3, 5, 224, 224] → trunk features [B, 512] (before the FC head)."""
        mid = self.netcnnlip(x)
        return mid.reshape(mid.size(0), -1)


def _calibrate(trunk: nn.Sequential, head: nn.Sequential, x: torch.Tensor) -> None:
    """One train-mode pass: trunk on ``x``, then the head on every output position."""
    features = trunk(x)  # [B, 512, *positions]
    head(features.flatten(2).transpose(1, 2).reshape(-1, features.size(1)))


def make_syncnet_checkpoint(path: str | Path, seed: int = 0, media_scale: bool = False) -> Path:
    """Save a SyncNet-shaped plain state dict to ``path`` and return the path.

    Stands in for the real ``syncnet_v2.model`` (which cannot be downloaded here).
    Deterministic for a given ``seed``, and leaves the global RNG untouched. BatchNorm
    layers get random affine parameters and running statistics measured in one train-mode
    pass over seeded random input (larger than one window, so even the last layers see many
    positions), so running_mean ≠ 0, running_var ≠ 1 and weight/bias ≠ 1/0
    (a conv bias landing in a BatchNorm bias would change activations) while eval-mode
    activations stay near unit scale (so 1e-5 absolute tolerances are meaningful).

    ``media_scale=True`` measures the statistics on input at the scale of real model input
    instead (frames 0…255 as the original reads them, MFCC with a spread of about 10), as the
    real checkpoint's were measured on real data. Without it, real frames drive the trunks
    hundreds of times past their calibrated scale, where a fine-tuning step of 1e-5 already
    moves the features more than a trained head tolerates. The sub-commands use it for their
    stand-in; the default keeps the unit-scale checkpoint the model tests rely on.
    """
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SyncNet()
        gen = torch.Generator().manual_seed(seed + 1)
        batch_norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS)]
        with torch.no_grad():
            for bn in batch_norms:
                bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
                bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
            # momentum=1.0: the running stats become exactly this batch's statistics.
            saved = [bn.momentum for bn in batch_norms]
            for bn in batch_norms:
                bn.momentum = 1.0
            model.train()
            # Larger-than-window inputs give each last BatchNorm many positions to measure.
            audio = torch.randn(4, 1, MFCC_BINS, 64, generator=gen)
            video = torch.randn(1, 3, 7, 288, 288, generator=gen)
            if media_scale:  # pixels 127.5 ± 42.5 within 0…255, MFCC spread ≈ 10
                audio, video = audio * 10, (video.clamp(-3, 3) + 3) * (255 / 6)
            _calibrate(model.netcnnaud, model.netfcaud, audio)
            _calibrate(model.netcnnlip, model.netfclip, video)
            for bn, momentum in zip(batch_norms, saved):
                bn.momentum = momentum
    model.eval()
    torch.save(model.state_dict(), path)
    return path
