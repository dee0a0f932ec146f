"""Training data from a ``make-data`` folder: decoded clips, random crops, per-step labels.

A crop takes L frames of video and the audio of L frames (see :mod:`syncnet_fcn.training`
for how its trunk features are computed). With
``shift=True`` the audio crop may start d frames away from the video crop, which turns a
clip of offset o into an example of offset o − d: every clip then teaches every offset,
and the labels stay uniform over −K…K however few clips there are. The label of step t is
the offset class (o + K) where the compared audio step t − o lies inside the crop, and
``IGNORE`` elsewhere (the model gives such offsets probability 0).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .features import mfcc
from .inference import usable_frames
from .media import read_clip
from .models import MFCC_PER_FRAME, VIDEO_WINDOW
from .synthetic import MANIFEST, MANIFEST_FORMAT

IGNORE = -100  # cross_entropy's ignore_index


@dataclass(frozen=True)
class Example:
    """One decoded clip: ``frames`` uint8 [F, 224, 224, 3], ``mfcc`` [13, 4F], its offset."""

    name: str
    offset: int
    frames: np.ndarray
    mfcc: torch.Tensor

    @property
    def steps(self) -> int:
        return len(self.frames) - (VIDEO_WINDOW - 1)


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise InputError(f"{directory}: no such folder; make one with python -m syncnet_fcn make-data {directory}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{directory}: has no {MANIFEST}; make a dataset with "
                         f"python -m syncnet_fcn make-data {directory}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read it ({exc}); re-create the dataset") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: not a '{MANIFEST_FORMAT}' manifest; make one with make-data")
    return manifest


def load_split(directory: Path, manifest: dict, split: str, max_offset: int) -> list[Example]:
    """Decode every clip of ``split`` ("train" or "heldout")."""
    examples = []
    for entry in manifest["clips"]:
        if entry.get("split") != split:
            continue
        offset = int(entry["offset"])
        if abs(offset) > max_offset:
            raise InputError(f"{directory / MANIFEST}: clip {entry['file']} has offset {offset}, outside "
                             f"the model's ±{max_offset}; use --max-offset {abs(offset)} or more")
        clip = read_clip(directory / entry["file"])
        features = mfcc(clip.audio)
        frames = usable_frames(len(clip.frames), features.shape[1])
        if frames < VIDEO_WINDOW:
            raise InputError(f"{directory / entry['file']}: only {frames} usable frames; re-create the dataset")
        examples.append(Example(entry["file"], offset, clip.frames[:frames],
                                features[:, :MFCC_PER_FRAME * frames].contiguous()))
    return examples


def step_labels(offset: int, steps: int, max_offset: int) -> torch.Tensor:
    """[steps] offset class per step, IGNORE where the compared audio step is outside the crop."""
    t = torch.arange(steps)
    inside = (t - offset >= 0) & (t - offset < steps)
    return torch.where(inside, torch.tensor(offset + max_offset), torch.tensor(IGNORE))


@dataclass(frozen=True)
class Crop:
    """Where one training example comes from: video frames [video, video + L), audio frames
    [audio, audio + L) of clip ``index``; ``offset`` is the example's offset."""

    index: int
    video: int
    audio: int
    offset: int


def sample_crop(rng: np.random.Generator, example: Example, index: int, length: int,
                max_offset: int, shift: bool) -> Crop:
    """A random crop of ``length`` frames; with ``shift``, the audio may move (see the module docstring)."""
    room = len(example.frames) - length
    if room < 0:
        raise InputError(f"{example.name}: {len(example.frames)} frames, shorter than the crop of {length}; "
                         f"use --crop-frames {len(example.frames)} or longer clips")
    video = int(rng.integers(0, room + 1))
    if not shift:
        return Crop(index, video, video, example.offset)
    # audio start a = video − d gives offset o − d; keep a inside the clip and |o − d| ≤ K
    low = max(0, video - (max_offset + example.offset))
    high = min(room, video + max_offset - example.offset)
    audio = int(rng.integers(low, high + 1))
    return Crop(index, video, audio, example.offset - (video - audio))
