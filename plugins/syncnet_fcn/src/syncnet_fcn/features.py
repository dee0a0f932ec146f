"""Model inputs from decoded media: MFCC exactly as syncnet_python computes it, and frames.

syncnet_python hands the 16 kHz mono int16 samples, unscaled, to
``python_speech_features.mfcc(audio, 16000)`` with every default: 25 ms frames every 10 ms
(100 Hz), 26 mel filters, 512-point FFT, pre-emphasis 0.97, lifter 22, the first coefficient
replaced by the log frame energy, 13 coefficients. ``mfcc`` does exactly that.
``StreamingMFCC`` gives the same columns from samples that arrive in chunks: it applies
the pre-emphasis itself (carrying the last sample across chunks) and hands
python_speech_features whole frames with its own pre-emphasis off, so a column never
depends on where a chunk happened to end. Each column is computed from the same float64
values as the whole-clip call; only BLAS summation order in the filterbank product can
differ (≈1e-16 relative).

Frames are arrays [n, 224, 224, 3] of uint8 in BGR order (what syncnet_python's OpenCV
reader gives), fed to the trunk unnormalised (0…255), as the original was trained.
"""
from __future__ import annotations

import numpy as np
import torch

from .models import FRAME_SIZE, MFCC_BINS

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
WINDOW = 400  # 25 ms at 16 kHz: python_speech_features' winlen
HOP = 160  # 10 ms: winstep, so 100 columns per second and 4 per video frame
PREEMPHASIS = 0.97


def _psf():
    # Imported on use: the `video` extra is optional and the rest of the plugin runs without it.
    try:
        import python_speech_features
    except ImportError as exc:  # scipy missing also lands here
        raise ImportError("MFCC needs the video extra: pip install 'syncnet-fcn[video]' "
                          f"({exc})") from None
    return python_speech_features


def mfcc_columns(samples: int) -> int:
    """How many MFCC columns python_speech_features makes from ``samples`` samples."""
    if samples <= WINDOW:
        return 1
    return 1 + -(-(samples - WINDOW) // HOP)


def mfcc(samples: np.ndarray) -> torch.Tensor:
    """16 kHz mono samples (int16 scale) → MFCC [13, columns] float32, as syncnet_python."""
    features = _psf().mfcc(np.asarray(samples), SAMPLE_RATE)  # [columns, 13] float64
    return torch.from_numpy(np.ascontiguousarray(features.T)).float()


class StreamingMFCC:
    """``mfcc`` over a stream: ``push(samples)`` returns the columns completed so far
    ([13, n] float32, possibly n = 0); ``finish()`` returns the zero-padded last ones."""

    def __init__(self) -> None:
        self._psf = _psf()
        self._pending = np.zeros(0)  # pre-emphasised samples from the next column's start
        self._last: float | None = None  # last raw sample, for the pre-emphasis
        self.columns = 0  # columns returned so far
        self.samples = 0  # samples received so far
        self.finished = False

    def push(self, samples: np.ndarray) -> torch.Tensor:
        if self.finished:
            raise RuntimeError("StreamingMFCC: push after finish")
        raw = np.asarray(samples, dtype=np.float64).reshape(-1)
        if raw.size == 0:
            return torch.zeros(MFCC_BINS, 0)
        previous = np.empty_like(raw)
        previous[1:] = raw[:-1]
        # python_speech_features keeps the very first sample as it is
        emphasised = raw - PREEMPHASIS * previous
        if self._last is None:
            emphasised[0] = raw[0]
        else:
            emphasised[0] = raw[0] - PREEMPHASIS * self._last
        self._last = float(raw[-1])
        self.samples += raw.size
        self._pending = np.concatenate([self._pending, emphasised])
        ready = 0 if self._pending.size < WINDOW else 1 + (self._pending.size - WINDOW) // HOP
        return self._take(ready)

    def finish(self) -> torch.Tensor:
        """The remaining columns, their frames padded with zeros as python_speech_features does."""
        if self.finished:
            return torch.zeros(MFCC_BINS, 0)
        self.finished = True
        remaining = mfcc_columns(self.samples) - self.columns
        return self._take(remaining, final=True)

    def _take(self, count: int, final: bool = False) -> torch.Tensor:
        if count <= 0:
            return torch.zeros(MFCC_BINS, 0)
        end = self._pending.size if final else (count - 1) * HOP + WINDOW
        # preemph=0: the samples are already emphasised (0 × previous leaves them unchanged)
        features = self._psf.mfcc(self._pending[:end], SAMPLE_RATE, preemph=0)[:count]
        self._pending = self._pending[count * HOP:]
        self.columns += count
        return torch.from_numpy(np.ascontiguousarray(features.T)).float()


def frames_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [n, 224, 224, 3] → float32 [1, 3, n, 224, 224] (0…255, channel order kept)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3):
        raise ValueError(f"frames: expected [n, {FRAME_SIZE}, {FRAME_SIZE}, 3] uint8, got "
                         f"{list(frames.shape)}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0).float()
