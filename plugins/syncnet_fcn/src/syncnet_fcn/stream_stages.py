"""The incremental stages behind :class:`~syncnet_fcn.stream.StreamSync`.

Each stage holds a window of its input indexed by global step (or MFCC column, or frame)
and computes an output step once everything in its receptive field has arrived, or once
the stream has ended (then the true end of the clip is the edge, as in the whole clip).
It runs the model's own layers on a slice with enough context on both sides and keeps the
outputs whose receptive field lies inside the slice, so they are the whole clip's; then it
forgets what no later step can read. Per-step layers run in the same fixed calls of
``STEPS_PER_CALL`` steps as the model does in eval mode (see :mod:`syncnet_fcn.fcn`), which
is what makes the video features bit-for-bit equal to the whole clip's.
"""
from __future__ import annotations

import numpy as np
import torch

from .features import frames_tensor
from .fcn import STEPS_PER_CALL, SyncNetFCN
from .models import AUDIO_WINDOW, MFCC_BINS, MFCC_PER_FRAME, VIDEO_WINDOW

# The audio trunk (clip mode): step t reads MFCC columns 4t − 8 … 4t + 26 (3×3 convs pad in time).
CLIP_CONTEXT_STEPS = 2  # 8 columns of left context = 2 steps
CLIP_COLUMNS_NEEDED = 27  # step t is final once columns < 4t + 27 are in
AUDIO_STEPS_PER_CALL = 4


class Window:
    """A tensor [C, n] holding global indices ``start`` … ``end − 1`` of a sequence."""

    def __init__(self, channels: int, dtype: torch.dtype = torch.float32):
        self.data = torch.zeros(channels, 0, dtype=dtype)
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + self.data.shape[1]

    def append(self, values: torch.Tensor) -> None:
        if values.shape[1]:
            self.data = torch.cat([self.data, values], dim=1)

    def get(self, lo: int, hi: int) -> torch.Tensor:
        if lo < self.start or hi > self.end:
            raise AssertionError(f"window holds {self.start}…{self.end - 1}, asked {lo}…{hi - 1}")
        return self.data[:, lo - self.start:hi - self.start]

    def forget_before(self, index: int) -> None:
        index = min(max(index, self.start), self.end)
        self.data = self.data[:, index - self.start:].clone()  # clone: let the old storage go
        self.start = index


class AudioTrunk:
    """MFCC columns → audio trunk steps [512, k], clip or per-window mode."""

    def __init__(self, model: SyncNetFCN):
        self.model = model
        per_window = model.audio_encoder.per_window
        self.context = 0 if per_window else CLIP_CONTEXT_STEPS
        self.needed = AUDIO_WINDOW if per_window else CLIP_COLUMNS_NEEDED
        self.columns = Window(MFCC_BINS)
        self.done = 0

    def push(self, columns: torch.Tensor) -> None:
        self.columns.append(columns)

    def advance(self, usable_columns: int, total_steps: int | None) -> torch.Tensor:
        """New steps; ``usable_columns`` are certainly inside the clip; ``total_steps`` once it ended.

        Steps go in blocks of AUDIO_STEPS_PER_CALL so that the trunk sees few distinct input
        lengths: oneDNN builds a kernel per shape, which costs more than the block itself.
        """
        parts = []
        while True:
            first_step = self.done
            last_step = first_step + AUDIO_STEPS_PER_CALL
            end = MFCC_PER_FRAME * (last_step - 1) + self.needed
            if total_steps is None:
                if end > usable_columns:
                    break
            else:
                if first_step >= total_steps:
                    break
                last_step = min(last_step, total_steps)
                end = min(end, MFCC_PER_FRAME * (total_steps + VIDEO_WINDOW - 1))
            first = max(0, first_step - self.context)
            cols = self.columns.get(MFCC_PER_FRAME * first, end)
            out = self.model.audio_encoder.trunk(cols[None, None])[0]
            parts.append(out[:, first_step - first:last_step - first])
            self.done = last_step
            self.columns.forget_before(MFCC_PER_FRAME * max(0, self.done - self.context))
        return torch.cat(parts, dim=1) if parts else torch.zeros(512, 0)


class VideoTrunk:
    """Frames → video trunk steps [512, k], in the model's fixed calls of STEPS_PER_CALL steps."""

    SPAN = STEPS_PER_CALL + VIDEO_WINDOW - 1

    def __init__(self, model: SyncNetFCN):
        self.model = model
        self.frames: list[np.ndarray] = []
        self.start = 0  # global index of self.frames[0]
        self.done = 0  # steps computed (always a multiple of STEPS_PER_CALL until the end)

    @property
    def end(self) -> int:
        return self.start + len(self.frames)

    def push(self, frames: np.ndarray) -> None:
        self.frames.extend(frames)

    def advance(self, certain_frames: int, total_frames: int | None) -> torch.Tensor:
        parts = []
        while True:
            first = self.done
            if first + self.SPAN <= certain_frames:
                last = first + self.SPAN
            elif total_frames is not None and total_frames - first >= VIDEO_WINDOW:
                last = total_frames
            else:
                break
            chunk = np.stack(self.frames[first - self.start:last - self.start])
            parts.append(self.model.video_encoder.trunk(frames_tensor(chunk))[0])
            self.done += last - first - (VIDEO_WINDOW - 1)
            drop = self.done - self.start
            del self.frames[:drop]
            self.start = self.done
        return torch.cat(parts, dim=1) if parts else torch.zeros(512, 0)


class Tail:
    """Trunk steps → encoder features [E, k]: ``channel_conv``, then the channel gate with
    its local squeeze (``radius`` steps each side)."""

    def __init__(self, encoder, embedding_dim: int, radius: int):
        self.encoder = encoder
        self.radius = radius
        self.trunk = Window(512)
        self.conv = Window(embedding_dim)  # channel_conv outputs, kept ``radius`` back
        self.done = 0  # steps emitted

    def advance(self, steps: torch.Tensor, total: int | None) -> torch.Tensor:
        self.trunk.append(steps)
        while self.trunk.end - self.conv.end >= STEPS_PER_CALL or (
                total is not None and self.conv.end < total):
            hi = min(self.trunk.end, self.conv.end + STEPS_PER_CALL)
            self.conv.append(self.encoder.channel_conv(self.trunk.get(self.conv.end, hi)[None])[0])
            self.trunk.forget_before(hi)
        out = []
        while self.done < self.conv.end:
            hi = min(self.conv.end, self.done + STEPS_PER_CALL)
            ready = hi + self.radius <= self.conv.end or (total is not None and self.conv.end == total)
            if not ready or (hi - self.done < STEPS_PER_CALL and total is None):
                break
            out.append(self._gated(self.done, hi))
            self.done = hi
            self.conv.forget_before(self.done - self.radius)
        return torch.cat(out, dim=1) if out else torch.zeros(self.conv.data.shape[0], 0)

    def _gated(self, lo: int, hi: int) -> torch.Tensor:
        attn = self.encoder.channel_attn
        first, last = max(self.conv.start, lo - self.radius), min(self.conv.end, hi + self.radius)
        squeezed = attn.squeeze(self.conv.get(first, last)[None])[:, :, lo - first:hi - first]
        return (self.conv.get(lo, hi)[None] * attn.gate(squeezed))[0]


class Joint:
    """Audio and video features → (probs, valid, refined audio, refined video) per step:
    ``refine`` then the correlation head, ``radius`` = their reach each side."""

    def __init__(self, model: SyncNetFCN, radius: int):
        self.model = model
        self.radius = radius
        self.audio = Window(model.embedding_dim)
        self.video = Window(model.embedding_dim)
        self.done = 0

    def advance(self, audio: torch.Tensor, video: torch.Tensor,
                total: int | None) -> tuple[torch.Tensor, ...] | None:
        """Blocks of STEPS_PER_CALL steps (fewer distinct shapes, see AudioTrunk.advance)."""
        self.audio.append(audio)
        self.video.append(video)
        known = min(self.audio.end, self.video.end)
        parts = []
        while self.done < known:
            limit = self.done + STEPS_PER_CALL
            if total is None and limit + self.radius > known:
                break
            limit, hi = min(limit, known), min(known, limit + self.radius)
            if total is None and hi < known and limit < self.done + STEPS_PER_CALL:
                break
            parts.append(self._block(self.done, limit, hi))
            self.done = limit
            self.audio.forget_before(self.done - self.radius)
            self.video.forget_before(self.done - self.radius)
        if not parts:
            return None
        return tuple(torch.cat(items, dim=-1) for items in zip(*parts))

    def _block(self, lo: int, limit: int, hi: int) -> tuple[torch.Tensor, ...]:
        first = max(self.audio.start, self.video.start, lo - self.radius)
        a, v = self.model.refine(self.audio.get(first, hi)[None], self.video.get(first, hi)[None])
        logits = self.model.head_logits(a, v)
        valid = self.model.correlation.valid_mask(logits.shape[2])
        keep = slice(lo - first, limit - first)
        return torch.softmax(logits, dim=1)[0, :, keep], valid[:, keep], a[0, :, keep], v[0, :, keep]
