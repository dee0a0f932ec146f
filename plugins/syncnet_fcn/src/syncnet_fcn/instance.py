"""SyncNetInstance_FCN: the seed's wrapper around a SyncNetFCN, with a tensor-level evaluate.

Confidence here is probability-based, the FCN analogue of SyncNet's "median distance −
minimum distance": at each step it is the top offset probability minus the median
probability over the offsets that are in range at that step (0 when all of them are equally
likely, close to 1 when one offset takes all the mass).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attention import SyncNetFCN_WithAttention
from .fcn import SyncNetFCN

MODEL_TYPES = ("fcn",)


@dataclass(frozen=True)
class EvalResult:
    """What ``SyncNetInstance_FCN.evaluate`` found for one clip of T frames.

    ``offsets`` / ``confidences`` have one entry per feature step (T − 4 of them; step t
    is the window of frames t..t+4), offsets in frames within −K…K (video frame t matches
    audio of frame t − offset). ``offset`` is the argmax of ``mean_probs`` (the per-step
    probabilities averaged over time, indexed −K…K) and ``confidence`` is that distribution's
    max − median over the offsets in range at some step. ``most_common_offset`` is the
    mode of the per-step offsets.
    """

    offsets: tuple[int, ...]
    confidences: tuple[float, ...]
    offset: int
    confidence: float
    mean_probs: tuple[float, ...]
    max_offset: int

    @property
    def most_common_offset(self) -> int:
        return Counter(self.offsets).most_common(1)[0][0]


class SyncNetInstance_FCN(nn.Module):
    """Holds ``self.model`` (SyncNetFCN, or SyncNetFCN_WithAttention when ``use_attention``).

    With ``pretrained_syncnet_path``, loads the original SyncNet conv trunks through
    ``syncnet_fcn.transfer.load_pretrained_syncnet`` (frozen, quiet) and keeps its stats
    dict in ``self.transfer_stats``.
    """

    def __init__(self, model_type: str = "fcn", embedding_dim: int = 512, max_offset: int = 15,
                 use_attention: bool = False, pretrained_syncnet_path: str | Path | None = None):
        super().__init__()
        if model_type not in MODEL_TYPES:
            raise ValueError(f"SyncNetInstance_FCN: model_type {model_type!r} is not one of "
                             f"{list(MODEL_TYPES)}; pass use_attention=True for the attention "
                             f"variant")
        model_cls = SyncNetFCN_WithAttention if use_attention else SyncNetFCN
        self.model = model_cls(embedding_dim=embedding_dim, max_offset=max_offset)
        self.max_offset = max_offset
        self.transfer_stats: dict[str, Any] | None = None
        if pretrained_syncnet_path is not None:
            # Imported here: transfer pulls in the mapping engine, which plain inference skips.
            from .transfer import load_pretrained_syncnet
            self.transfer_stats = load_pretrained_syncnet(
                self.model, pretrained_syncnet_path, freeze_conv_layers=True, verbose=False)

    def forward(self, audio_mfcc: torch.Tensor,
                video_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same as ``self.model(audio_mfcc, video_frames)``."""
        return self.model(audio_mfcc, video_frames)

    def evaluate(self, audio_mfcc: torch.Tensor, video_frames: torch.Tensor) -> EvalResult:
        """Offsets and confidences for one clip, in eval mode without gradients.

        ``audio_mfcc`` [1, 13, 4T] or [1, 1, 13, 4T]; ``video_frames`` [3, T, 224, 224] or
        [1, 3, T, 224, 224]. Every submodule's train/eval mode is restored afterwards.
        """
        if audio_mfcc.dim() == 3:
            audio_mfcc = audio_mfcc.unsqueeze(0)
        if video_frames.dim() == 4:
            video_frames = video_frames.unsqueeze(0)
        if audio_mfcc.shape[0] != 1 or video_frames.shape[0] != 1:
            raise ValueError(f"evaluate: takes one clip, got batches of {audio_mfcc.shape[0]} "
                             f"(audio) and {video_frames.shape[0]} (video); call it per clip")
        # Per module, so a caller who keeps e.g. frozen BatchNorms in eval gets that back.
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            with torch.no_grad():
                probs = self.model(audio_mfcc, video_frames)[0][0]  # [2K+1, T']
        finally:
            for module, training in modes:
                module.training = training
        return summarise_probs(probs, self.model.correlation.valid_mask(probs.shape[1]),
                               self.max_offset)


def summarise_probs(probs: torch.Tensor, valid: torch.Tensor, max_offset: int) -> EvalResult:
    """probs, valid [2K+1, T'] → EvalResult (see the module docstring for confidence)."""
    offsets, confidences = [], []
    for step in range(probs.shape[1]):
        column = probs[valid[:, step], step]
        offsets.append(int(probs[:, step].argmax()) - max_offset)
        confidences.append(float(column.max() - column.median()))
    mean_probs = probs.mean(dim=1)
    reachable = mean_probs[valid.any(dim=1)]  # offsets in range at one step at least
    return EvalResult(
        offsets=tuple(offsets),
        confidences=tuple(confidences),
        offset=int(mean_probs.argmax()) - max_offset,
        confidence=float(reachable.max() - reachable.median()),
        mean_probs=tuple(float(p) for p in mean_probs),
        max_offset=max_offset,
    )


_summarise = summarise_probs  # the name older callers import
