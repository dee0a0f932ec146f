"""Decode a video file with PyAV into what SyncNet eats: 25 fps 224×224 BGR frames and
16 kHz mono int16 samples, aligned on the file's timestamps.

- Frames are resampled to 25 fps the way FFmpeg's ``fps`` filter does: each source frame
  goes to the output tick nearest its timestamp; ticks without one repeat the previous frame,
  and of several frames on one tick the last wins. ``crop=True`` centre-crops to a square
  first; then the frame is resized to 224×224.
- Audio goes through FFmpeg's resampler to 16 kHz mono s16 (what syncnet_python's
  ``ffmpeg -ac 1 -ar 16000 -acodec pcm_s16le`` gives) and is shifted so that sample 0 is the
  first video frame's time: a stream that starts later is padded with silence, an earlier
  one is cut. Encoder priming (AAC) is removed by FFmpeg before we see the samples.

Every problem with the file is a :class:`MediaError` naming the file and what to do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError
from .features import FPS, SAMPLE_RATE
from .models import FRAME_SIZE


class MediaError(InputError):
    """A file that cannot be used as a SyncNet input (missing, unreadable, no audio...)."""


@dataclass(frozen=True)
class Clip:
    """A decoded clip: ``frames`` uint8 [T, 224, 224, 3] BGR at 25 fps, ``audio`` int16 [N]
    mono 16 kHz with sample 0 at the first frame's time."""

    path: Path
    frames: np.ndarray
    audio: np.ndarray
    source_fps: float
    source_size: tuple[int, int]  # width, height before cropping and resizing
    declared_seconds: float | None = None  # the length the container states, when it states one

    @property
    def seconds(self) -> float:
        return len(self.frames) / FPS


def _av():
    try:
        import av
    except ImportError:
        raise ImportError("reading video needs the video extra: pip install 'syncnet-fcn[video]'") from None
    return av


def _open(path: Path):
    av = _av()
    if not path.exists():
        raise MediaError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder; give a video file (for a dataset folder use "
                         f"`python -m syncnet_fcn train`)")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot read it as a video ({exc}); is it a video file? "
                         f"Re-encode it with ffmpeg if a player can open it") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: has no video stream; sync needs a face-crop video with its sound")
    if not container.streams.audio:
        container.close()
        raise MediaError(f"{path}: has no audio track; sync compares the sound with the lips, so "
                         f"the clip needs its audio (mux it back in, e.g. ffmpeg -i video -i audio "
                         f"-c copy out.mkv)")
    return container


def _square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top:top + side, left:left + side]


def _to_model_frame(frame, crop: bool) -> np.ndarray:
    av = _av()
    if crop and frame.width != frame.height:
        square = np.ascontiguousarray(_square(frame.to_ndarray(format="bgr24")))
        frame = av.VideoFrame.from_ndarray(square, format="bgr24")
    return frame.reformat(width=FRAME_SIZE, height=FRAME_SIZE, format="bgr24").to_ndarray()


class _FrameRate:
    """The fps filter's rule: source frame at time s lands on tick round((s − t0) × 25)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.next_tick = 0
        self.held: np.ndarray | None = None

    def push(self, time: float, image: np.ndarray) -> list[np.ndarray]:
        if self.start is None:
            self.start = time
        tick = math.floor((time - self.start) * FPS + 0.5)
        out = []
        if self.held is not None:
            while self.next_tick < tick:
                out.append(self.held)
                self.next_tick += 1
        self.held = image
        return out

    def finish(self) -> list[np.ndarray]:
        if self.held is None:
            return []
        self.next_tick += 1
        held, self.held = self.held, None
        return [held]


class _AudioAligner:
    """Drops or pads samples so that sample 0 sits at the first video frame's time."""

    def __init__(self) -> None:
        self.shift: int | None = None  # samples to pad (> 0) or drop (< 0), once both starts are known
        self.waiting: list[np.ndarray] = []
        self.audio_start: float | None = None

    def push(self, samples: np.ndarray, video_start: float | None) -> np.ndarray:
        if self.shift is None:
            self.waiting.append(samples)
            if video_start is None or self.audio_start is None:
                return np.zeros(0, np.int16)
            self.shift = round((self.audio_start - video_start) * SAMPLE_RATE)
            samples = np.concatenate(self.waiting)
            self.waiting = []
            if self.shift > 0:
                return np.concatenate([np.zeros(self.shift, np.int16), samples])
        if self.shift < 0:
            cut = min(-self.shift, samples.size)
            self.shift += cut
            samples = samples[cut:]
        return samples


def iter_media(path: str | Path, crop: bool = False,
               chunk_seconds: float = 0.2) -> Iterator[tuple[str, np.ndarray]]:
    """Decode ``path`` in order of arrival: yields ("video", uint8 [n, 224, 224, 3]) and
    ("audio", int16 [m]) chunks of about ``chunk_seconds`` each, as StreamSync wants them."""
    av = _av()
    path = Path(path)
    container = _open(path)
    video_stream, audio_stream = container.streams.video[0], container.streams.audio[0]
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    rate, aligner = _FrameRate(), _AudioAligner()
    frames: list[np.ndarray] = []
    samples: list[np.ndarray] = []
    frame_chunk = max(1, round(chunk_seconds * FPS))
    sample_chunk = max(1, round(chunk_seconds * SAMPLE_RATE))

    def audio_out(decoded) -> None:
        for resampled in resampler.resample(decoded):
            if aligner.audio_start is None:
                aligner.audio_start = float(resampled.time or 0.0)
            samples.append(aligner.push(resampled.to_ndarray().reshape(-1), rate.start))

    try:
        with container:
            for packet in container.demux(video_stream, audio_stream):
                for decoded in packet.decode():
                    if packet.stream is video_stream:
                        time = decoded.time if decoded.time is not None else rate.next_tick / FPS
                        frames.extend(rate.push(float(time), _to_model_frame(decoded, crop)))
                    else:
                        audio_out(decoded)
                if len(frames) >= frame_chunk:
                    yield "video", np.stack(frames)
                    frames = []
                if sum(s.size for s in samples) >= sample_chunk:
                    yield "audio", np.concatenate(samples)
                    samples = []
            audio_out(None)
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: decoding failed ({exc}); the file may be truncated or damaged; "
                         f"re-encode it with ffmpeg") from None
    frames.extend(rate.finish())
    if aligner.shift is None and aligner.waiting:  # audio but no video frame decoded
        samples.extend(aligner.waiting)
    if frames:
        yield "video", np.stack(frames)
    if samples and sum(s.size for s in samples):
        yield "audio", np.concatenate(samples)


def read_clip(path: str | Path, crop: bool = False) -> Clip:
    """Decode the whole of ``path`` (see the module docstring)."""
    path = Path(path)
    frames: list[np.ndarray] = []
    audio: list[np.ndarray] = []
    for kind, chunk in iter_media(path, crop=crop, chunk_seconds=10.0):
        (frames if kind == "video" else audio).append(chunk)
    if not frames:
        raise MediaError(f"{path}: its video stream has no frames; check the file")
    with _av().open(str(path)) as container:
        stream = container.streams.video[0]
        source_fps = float(stream.average_rate or stream.base_rate or FPS)
        size = (stream.codec_context.width, stream.codec_context.height)
        declared = container.duration / 1_000_000 if container.duration else None  # in µs
    return Clip(path, np.concatenate(frames), np.concatenate(audio) if audio else np.zeros(0, np.int16),
                source_fps, size, declared)
