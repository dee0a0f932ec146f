"""StreamSync: SyncNetFCN on audio and video that arrive in chunks, with constant memory.

    sync = StreamSync(model)
    for kind, chunk in iter_media("talk.mp4"):         # or any iterator of chunks
        steps = sync.push_audio(chunk) if kind == "audio" else sync.push_video(chunk)
        for step in steps:
            print(step.time, step.offset, step.confidence)
    steps = sync.finish()                               # the last steps, at the true end

Audio is 16 kHz mono samples at int16 scale; video is uint8 frames [n, 224, 224, 3] BGR at
25 fps, both starting at the same instant (what :func:`~syncnet_fcn.media.iter_media`
yields). A step is emitted as soon as everything in its receptive field has arrived: the
audio trunk's 35 MFCC columns, the channel gate's ``squeeze_radius`` steps each side, the
correlation's ±K steps, the predictor and smoother's 4 steps, and for the attention model
twice its ``attention_radius``. Everything older than what a future step can read is
dropped, so memory stays flat however long the stream runs; the one exception is a
modality running ahead of the other, which is buffered up to ``max_skew_seconds``.

The outputs are the whole clip's (``model(audio, video)`` on everything pushed): the video
features bit for bit, the audio features and probabilities within float rounding (the audio
trunk runs on slices of the clip, where oneDNN may sum in another order, ≈1e-6).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from .errors import InputError
from .features import FPS, SAMPLE_RATE, StreamingMFCC
from .fcn import PREDICTOR_REACH, SyncNetFCN
from .inference import eval_mode, usable_frames
from .models import FRAME_SIZE, MFCC_PER_FRAME, VIDEO_WINDOW
from .stream_stages import AudioTrunk, Joint, Tail, VideoTrunk


@dataclass(frozen=True)
class StreamStep:
    """One step's result: step ``index`` is the 5-frame window starting at frame ``index``.

    ``probs`` [2K+1] over offsets −K…K (index k ↔ offset k − K), ``valid`` marks the offsets
    whose audio step exists, the features [E] are the ones the correlation compared.
    """

    index: int
    probs: torch.Tensor
    valid: torch.Tensor
    audio_feature: torch.Tensor
    video_feature: torch.Tensor
    max_offset: int

    @property
    def time(self) -> float:
        """Start of the window, in seconds from the first frame."""
        return self.index / FPS

    @property
    def offset(self) -> int:
        return int(self.probs.argmax()) - self.max_offset

    @property
    def confidence(self) -> float:
        """Top probability minus the median over the offsets in range (as ``evaluate``)."""
        column = self.probs[self.valid]
        return float(column.max() - column.median())


class StreamSync:
    """Feed ``push_audio`` / ``push_video`` in any interleaving; each returns the steps that
    became computable; ``finish`` returns the rest. See the module docstring."""

    def __init__(self, model: SyncNetFCN, max_skew_seconds: float = 10.0):
        refine = model.refine_radius()
        if model.squeeze_radius is None or refine is None:
            raise ValueError("StreamSync: this model squeezes or attends over the whole clip "
                             "(squeeze_radius or attention_radius is None), so no step is final "
                             "before the stream ends; build it with a finite radius")
        self.model = model
        self.max_offset = model.max_offset
        self.max_skew = max_skew_seconds
        self.mfcc = StreamingMFCC()
        self.columns = 0
        self.frames = 0
        self.finished = False
        self.audio_trunk = AudioTrunk(model)
        self.video_trunk = VideoTrunk(model)
        self.audio_tail = Tail(model.audio_encoder, model.embedding_dim, model.squeeze_radius)
        self.video_tail = Tail(model.video_encoder, model.embedding_dim, model.squeeze_radius)
        self.joint = Joint(model, refine + model.max_offset + PREDICTOR_REACH)

    def push_audio(self, samples: np.ndarray) -> list[StreamStep]:
        """16 kHz mono samples (int16 scale) that follow the previous ones: int16 [n], or any
        other integer or float dtype whose values are int16-scale; refused (:func:`check_audio`):
        several channels, values that are not finite or beyond int16, float audio in [-1, 1]."""
        self._check_open()
        columns = self.mfcc.push(check_audio(samples))
        self.columns += columns.shape[1]
        self.audio_trunk.push(columns)
        return self._advance(final=False)

    def push_video(self, frames: np.ndarray) -> list[StreamStep]:
        """uint8 frames [n, 224, 224, 3] (BGR, 25 fps) that follow the previous ones."""
        self._check_open()
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3) or frames.dtype != np.uint8:
            raise ValueError(f"push_video: expected uint8 frames [n, {FRAME_SIZE}, {FRAME_SIZE}, 3], "
                             f"got {frames.dtype} {list(frames.shape)}")
        self.frames += len(frames)
        self.video_trunk.push(frames)
        return self._advance(final=False)

    def finish(self) -> list[StreamStep]:
        """The stream ended: compute the remaining steps with the clip's true end."""
        self._check_open()
        columns = self.mfcc.finish()
        self.columns += columns.shape[1]
        self.audio_trunk.push(columns)
        self.finished = True
        frames = usable_frames(self.frames, self.columns)
        if frames < VIDEO_WINDOW:
            raise InputError(f"the stream holds {self.frames} frames and {self.mfcc.samples} audio "
                             f"samples, which overlap for {frames} frames; SyncNet needs at least "
                             f"{VIDEO_WINDOW} (0.2 s), and a few seconds to judge offsets")
        return self._advance(final=True)

    def run(self, chunks: Iterable[tuple[str, np.ndarray]]) -> Iterator[StreamStep]:
        """Consume ("audio", samples) / ("video", frames) chunks; yield steps as they come."""
        for kind, chunk in chunks:
            if kind not in ("audio", "video"):
                raise ValueError(f"StreamSync.run: chunk kind {kind!r} is neither 'audio' nor 'video'")
            yield from (self.push_audio(chunk) if kind == "audio" else self.push_video(chunk))
        yield from self.finish()

    def buffered(self) -> dict[str, int]:
        """How much each stage holds right now (the memory test watches these)."""
        return {"samples": int(self.mfcc._pending.size), "columns": self.audio_trunk.columns.data.shape[1],
                "frames": len(self.video_trunk.frames),
                "audio_steps": self.audio_tail.trunk.data.shape[1] + self.audio_tail.conv.data.shape[1],
                "video_steps": self.video_tail.trunk.data.shape[1] + self.video_tail.conv.data.shape[1],
                "joint_steps": self.joint.audio.data.shape[1] + self.joint.video.data.shape[1]}

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError("StreamSync: the stream was finished; start a new StreamSync")

    def _advance(self, final: bool) -> list[StreamStep]:
        # frames the audio certainly covers (python_speech_features' column count only grows)
        certain = usable_frames(self.frames, self.columns)
        self._check_skew(certain)
        total = certain - (VIDEO_WINDOW - 1) if final else None
        with eval_mode(self.model):
            audio = self.audio_tail.advance(
                self.audio_trunk.advance(MFCC_PER_FRAME * certain, total), total)
            video = self.video_tail.advance(
                self.video_trunk.advance(certain, certain if final else None), total)
            result = self.joint.advance(audio, video, total)
        if result is None:
            return []
        first = self.joint.done - result[0].shape[1]
        probs, valid, audio_features, video_features = result
        return [StreamStep(first + i, probs[:, i], valid[:, i], audio_features[:, i],
                           video_features[:, i], self.max_offset) for i in range(probs.shape[1])]

    def _check_skew(self, certain: int) -> None:
        ahead = max(self.frames - certain, self.columns // MFCC_PER_FRAME - certain) / FPS
        if ahead > self.max_skew:
            which = "video" if self.frames > certain else "audio"
            raise InputError(f"StreamSync: the {which} ran {ahead:.1f} s ahead of the other stream "
                             f"(limit {self.max_skew:g} s); feed audio and video interleaved, in "
                             f"chunks of similar duration, or raise max_skew_seconds")


_INT16 = np.iinfo(np.int16)


def check_audio(samples, where: str = "StreamSync.push_audio") -> np.ndarray:
    """``samples`` as 16 kHz mono samples at int16 scale, or an :class:`InputError` saying what
    was expected and how to convert. A 2-D array is refused, not flattened: stereo [n, 2]
    flattened is 2n samples, and audio time would run twice as fast as the video's. Float
    samples that all lie in [-1, 1] (and are not all 0) are float audio, which would be
    32768 times too quiet; int16-scale audio is that quiet only in digital silence."""
    array = np.asarray(samples)
    got = f"got {array.dtype} {list(array.shape)}"
    expected = f"{where}: expected 16 kHz mono samples [n] at int16 scale (as iter_media yields), {got}"
    if array.ndim != 1:
        if array.ndim == 2 and 1 in array.shape:
            raise InputError(f"{expected}: one channel, so pass samples.reshape(-1)")
        if array.ndim == 2:
            raise InputError(f"{expected}: mix the channels down to one first (samples.mean(axis=1) for "
                             "[n, channels], axis=0 for [channels, n]) or pass one channel")
        raise InputError(expected)
    if array.dtype.kind not in "iuf":
        raise InputError(f"{expected}: int16 samples are needed")
    if array.size == 0:
        return array
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            raise InputError(f"{expected}: sample {bad} is {array[bad]}; samples must be finite numbers")
        peak = float(np.abs(array).max())
        if 0 < peak <= 1.0:
            raise InputError(f"{expected}, all within [-1, 1]: float audio; scale it to int16, e.g. "
                             "np.clip(samples * 32768, -32768, 32767).astype(np.int16)")
    low, high = array.min(), array.max()
    if low < _INT16.min or high > _INT16.max:
        raise InputError(f"{expected}, values from {low} to {high}: beyond int16 ({_INT16.min} to {_INT16.max}); "
                         "convert to int16 samples first (32-bit PCM: (samples >> 16).astype(np.int16))")
    return array


__all__ = ["StreamStep", "StreamSync", "SAMPLE_RATE", "FPS"]
