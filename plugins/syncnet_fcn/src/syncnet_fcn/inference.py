"""A whole clip through SyncNetFCN with bounded memory, and the clip's usable length.

In eval mode the model already runs its video trunk in fixed calls of ``STEPS_PER_CALL``
steps (see :mod:`syncnet_fcn.fcn`); ``fcn_outputs`` also converts the uint8 frames to
float one call at a time, so a 60 s clip never exists as a 900 MB float tensor. The calls
are the model's own, so the outputs are bit for bit ``model(audio, video)``'s.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .features import frames_tensor
from .fcn import STEPS_PER_CALL, SyncNetFCN
from .instance import EvalResult, summarise_probs
from .models import MFCC_PER_FRAME, VIDEO_WINDOW


def usable_frames(frames: int, mfcc_columns: int) -> int:
    """Frames the FCN can use: as many as the video has and the audio covers (4 columns each).

    python_speech_features makes 4T − 1 columns from exactly T frames of audio, so a clip whose
    audio ends with its video loses its last frame.
    """
    return min(frames, mfcc_columns // MFCC_PER_FRAME)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients; every submodule's own mode comes back afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def video_trunk_features(model: SyncNetFCN, frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [T, 224, 224, 3] → video trunk features [1, 512, T − 4] (eval mode),
    converting to float one fixed call at a time."""
    steps = len(frames) - (VIDEO_WINDOW - 1)
    span = STEPS_PER_CALL + VIDEO_WINDOW - 1
    return torch.cat([model.video_encoder.trunk(frames_tensor(frames[first:first + span]))
                      for first in range(0, steps, STEPS_PER_CALL)], dim=2)


def fcn_trunks(model: SyncNetFCN, mfcc: torch.Tensor,
               frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Trunk features (audio, video [1, 512, T']) over the usable part of one clip (eval mode)."""
    count = usable_frames(len(frames), mfcc.shape[1])
    if count < VIDEO_WINDOW:
        raise ValueError(f"fcn_trunks: {len(frames)} frames and {mfcc.shape[1]} MFCC columns "
                         f"overlap for {count} frames; need at least {VIDEO_WINDOW}")
    audio = model.audio_encoder.trunk(mfcc[None, None, :, :MFCC_PER_FRAME * count])
    return audio, video_trunk_features(model, frames[:count])


def fcn_outputs(model: SyncNetFCN, mfcc: torch.Tensor,
                frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``model``'s outputs for one clip, batch axis dropped: probs [2K+1, T'], audio and
    video features [E, T'], in eval mode without gradients."""
    with eval_mode(model):
        probs, audio, video = model.from_trunks(*fcn_trunks(model, mfcc, frames))
    return probs[0], audio[0], video[0]


def summarise(model: SyncNetFCN, probs: torch.Tensor) -> EvalResult:
    """probs [2K+1, T'] → EvalResult (offset, confidence, per-step offsets)."""
    return summarise_probs(probs, model.correlation.valid_mask(probs.shape[1]), model.max_offset)
