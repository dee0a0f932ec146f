"""The baseline: the original SyncNet evaluated the way syncnet_python's
``SyncNetInstance.evaluate`` does it.

- ``min_length = min(frames, samples // 640)`` and, as there, windows start at frames
  0 … min_length − 6 (``range(0, min_length − 5)``: the last possible window is left out).
- Each 5-frame window goes through ``forward_lip`` and its 20 MFCC columns (starting at
  4 × the first frame) through ``forward_aud``, 20 windows per batch.
- Distances over offsets (vshift 15): video step t against audio steps t − 15 … t + 15,
  zero vectors beyond the clip, ``pairwise_distance``; averaged over steps.
- offset = vshift − argmin of the mean distance; confidence = median − minimum of the mean
  distance; per step, the confidence at the chosen offset (median − that step's distance)
  and its 9-tap median filter.

The offset sign is the FCN's: video step t matches audio step t − offset.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .features import SAMPLES_PER_FRAME, frames_tensor
from .models import AUDIO_WINDOW, MFCC_PER_FRAME, VIDEO_WINDOW, SyncNet

VSHIFT = 15
BATCH_SIZE = 20
MEDIAN_TAPS = 9


@dataclass(frozen=True)
class OriginalResult:
    """``dists`` [steps, 2·vshift+1]: distance of video step t to audio step t + j − vshift."""

    dists: torch.Tensor
    vshift: int
    offset: int
    confidence: float
    min_dist: float
    mean_dists: tuple[float, ...]
    offsets: tuple[int, ...]  # per step: vshift − argmin of that step's distances
    confidences: tuple[float, ...]  # per step: median(mean) − distance at the chosen offset
    smoothed_confidences: tuple[float, ...]  # the same through a 9-tap median filter


def window_count(frames: int, samples: int) -> int:
    """How many windows syncnet_python evaluates for a clip of that many frames and samples."""
    return max(0, min(frames, samples // SAMPLES_PER_FRAME) - VIDEO_WINDOW)


def offset_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> torch.Tensor:
    """video, audio [steps, D] → [steps, 2·vshift+1] (zero audio vectors beyond the clip)."""
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    windows = padded.unfold(0, 2 * vshift + 1, 1).transpose(1, 2)  # [steps, 2v+1, D]
    return torch.nn.functional.pairwise_distance(video[:, None, :].expand_as(windows), windows)


def evaluate_original(model: SyncNet, mfcc: torch.Tensor, frames: np.ndarray, samples: int,
                      vshift: int = VSHIFT, batch_size: int = BATCH_SIZE) -> OriginalResult:
    """Run ``model`` over every window of one clip (``mfcc`` [13, C], ``frames`` uint8 [T, 224,
    224, 3], ``samples`` the audio length) and compare the embeddings over offsets."""
    steps = window_count(len(frames), samples)
    if steps < 1:
        raise ValueError(f"evaluate_original: {len(frames)} frames and {samples} samples give no "
                         f"window; need at least {VIDEO_WINDOW + 1} frames of audio and video")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    video_out, audio_out = [], []
    try:
        with torch.no_grad():
            for start in range(0, steps, batch_size):
                batch = range(start, min(steps, start + batch_size))
                # one window at a time is converted, as the original's slices of one clip tensor
                video = torch.cat([frames_tensor(frames[t:t + VIDEO_WINDOW]) for t in batch])
                cols = [mfcc[:, MFCC_PER_FRAME * t:MFCC_PER_FRAME * t + AUDIO_WINDOW] for t in batch]
                audio = torch.stack(cols).unsqueeze(1)  # [b, 1, 13, 20]
                video_out.append(model.forward_lip(video))
                audio_out.append(model.forward_aud(audio))
    finally:
        for module, training in modes:
            module.training = training
    dists = offset_distances(torch.cat(video_out), torch.cat(audio_out), vshift)
    return summarise_distances(dists, vshift)


def summarise_distances(dists: torch.Tensor, vshift: int) -> OriginalResult:
    """The original's read-out of a distance table [steps, 2·vshift+1]."""
    import warnings

    from scipy.signal import medfilt  # the same filter syncnet_python applies

    mean = dists.mean(dim=0)
    min_dist, min_index = torch.min(mean, dim=0)
    median = torch.median(mean)
    step_conf = (median - dists[:, min_index]).numpy().astype(np.float64)
    with warnings.catch_warnings():  # clips under 9 steps: scipy pads with zeros, as intended
        warnings.filterwarnings("ignore", message="kernel_size exceeds", category=UserWarning)
        smoothed = medfilt(step_conf, kernel_size=MEDIAN_TAPS)
    return OriginalResult(
        dists=dists,
        vshift=vshift,
        offset=vshift - int(min_index),
        confidence=float(median - min_dist),
        min_dist=float(min_dist),
        mean_dists=tuple(float(d) for d in mean),
        offsets=tuple(vshift - int(i) for i in dists.argmin(dim=1)),
        confidences=tuple(float(c) for c in step_conf),
        smoothed_confidences=tuple(float(c) for c in smoothed),
    )
