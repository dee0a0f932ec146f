"""Synthetic talking mouths: real video files with a known audio-visual offset.

Each clip is a cartoon face whose mouth opens with the loudness of a buzzing "voice": the
voice is a harmonic tone shaped by a random syllable envelope (bursts of 80–300 ms with
gaps), and the mouth's opening at video frame t follows that envelope at audio frame
t − offset. So offset o > 0 means the sound comes o frames before the picture that
matches it, the sign :class:`~syncnet_fcn.fcn.SyncNetFCN` and syncnet_python report.

Files are written with PyAV: H.264 video at 25 fps and, by default, 16-bit PCM audio at
16 kHz in Matroska (``.mkv``), so no audio codec delay blurs the known offset; ``.mp4``
(AAC) is available for testing the decoder on the usual format.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .features import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "syncnet-fcn synthetic clips"
CONTAINERS = {"mkv": "pcm_s16le", "mp4": "aac"}


@dataclass(frozen=True)
class ClipSpec:
    """What to draw: ``frames`` video frames of ``size`` pixels with the sound ``offset`` frames ahead."""

    frames: int
    offset: int
    seed: int
    size: int = 224


def syllable_envelope(rng: np.random.Generator, samples: int) -> np.ndarray:
    """A loudness curve in 0…1 at 16 kHz: smooth bursts with silent gaps between them."""
    env = np.zeros(samples)
    position = int(rng.uniform(0.0, 0.2) * SAMPLE_RATE)
    while position < samples:
        length = int(rng.uniform(0.08, 0.30) * SAMPLE_RATE)
        shape = np.sin(np.linspace(0.0, np.pi, length)) ** 0.7
        end = min(position + length, samples)
        env[position:end] = rng.uniform(0.35, 1.0) * shape[:end - position]
        position = end + int(rng.uniform(0.04, 0.25) * SAMPLE_RATE)
    return env


def voice(rng: np.random.Generator, envelope: np.ndarray) -> np.ndarray:
    """A buzzing harmonic tone with a wandering pitch, shaped by ``envelope``; int16."""
    t = np.arange(envelope.size) / SAMPLE_RATE
    pitch = rng.uniform(100.0, 220.0) * (1.0 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    weights = rng.uniform(0.2, 1.0, 8) / np.arange(1, 9)
    tone = sum(w * np.sin((h + 1) * phase + rng.uniform(0, 2 * np.pi)) for h, w in enumerate(weights))
    tone /= np.abs(tone).max()
    noise = rng.standard_normal(envelope.size) * 0.01
    return np.clip((tone * envelope + noise) * 12000, -32768, 32767).astype(np.int16)


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 <= 1.0


def face_frames(rng: np.random.Generator, openings: np.ndarray, size: int) -> np.ndarray:
    """uint8 [n, size, size, 3] BGR: a face whose mouth opens by ``openings`` (0…1) per frame."""
    scale = size / 224
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    skin = rng.uniform([90, 120, 170], [150, 180, 235])  # BGR
    shade = 1.0 - 0.15 * (yy / size)[..., None]
    base = skin * shade
    centre = np.array([size * 0.64, size * 0.5]) + rng.uniform(-10, 10, 2) * scale
    for dx in (-0.18, 0.18):  # eyes: static, so only the mouth carries the timing
        base[_ellipse(yy, xx, size * 0.36, size * (0.5 + dx), 7 * scale, 11 * scale)] = (40, 40, 40)
    lips = rng.uniform([60, 60, 150], [110, 100, 200])
    drift = np.cumsum(rng.normal(0, 0.3, (openings.size, 2)), axis=0).clip(-3, 3) * scale
    out = np.empty((openings.size, size, size, 3), np.uint8)
    for i, opening in enumerate(openings):
        cy, cx = centre + drift[i]
        height, width = (3 + 28 * opening) * scale, (30 + 8 * opening) * scale
        image = base.copy()
        image[_ellipse(yy, xx, cy, cx, height + 5 * scale, width + 5 * scale)] = lips
        image[_ellipse(yy, xx, cy, cx, height, width)] = (25, 15, 30)
        image += rng.normal(0, 2.0, image.shape)
        out[i] = image.clip(0, 255).astype(np.uint8)
    return out


def render(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [frames, size, size, 3] BGR, samples int16) for ``spec``."""
    rng = np.random.default_rng(spec.seed)
    margin = abs(spec.offset) + 1  # the envelope reaches that far before and after the clip
    envelope = syllable_envelope(rng, (spec.frames + 2 * margin) * SAMPLES_PER_FRAME)
    audio = voice(rng, envelope[margin * SAMPLES_PER_FRAME:(margin + spec.frames) * SAMPLES_PER_FRAME])
    per_frame = envelope.reshape(-1, SAMPLES_PER_FRAME).mean(axis=1)
    # frame t shows the sound of audio frame t − offset
    openings = per_frame[margin - spec.offset: margin - spec.offset + spec.frames]
    return face_frames(rng, openings, spec.size), audio


def write_video(path: str | Path, frames: np.ndarray, samples: np.ndarray | None,
                audio_codec: str | None = None) -> Path:
    """Write BGR frames (25 fps, H.264) and int16 samples (16 kHz mono) to ``path`` with PyAV.

    ``samples=None`` writes a silent video without an audio track. The audio codec follows
    the extension (``CONTAINERS``) unless given.
    """
    import av

    path = Path(path)
    codec = audio_codec or CONTAINERS.get(path.suffix.lstrip("."), "aac")
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "17", "preset": "veryfast"}
        sound = None
        if samples is not None:
            sound = out.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            _write_audio(av, out, sound, samples)
    return path


def _write_audio(av, out, sound, samples: np.ndarray) -> None:
    resampler = av.AudioResampler(format=sound.format.name, layout="mono", rate=SAMPLE_RATE)
    block = 1024
    for start in range(0, samples.size, block):
        chunk = np.ascontiguousarray(samples[start:start + block].reshape(1, -1))
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        for converted in resampler.resample(frame):
            out.mux(sound.encode(converted))
    for converted in resampler.resample(None):
        out.mux(sound.encode(converted))
    out.mux(sound.encode(None))


def make_dataset(directory: str | Path, train: int = 48, heldout: int = 16, seconds: float = 3.0,
                 max_offset: int = 15, seed: int = 0, container: str = "mkv",
                 size: int = 224) -> dict:
    """Write ``train`` + ``heldout`` clips and ``manifest.json`` into ``directory``; returns the manifest.

    Offsets are drawn uniformly from −max_offset…max_offset; every clip has its own seed,
    so a clip can be re-rendered from the manifest alone.
    """
    if container not in CONTAINERS:
        raise ValueError(f"container {container!r}: use one of {sorted(CONTAINERS)}")
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    frames = round(seconds * FPS)
    clips = []
    for split, count in (("train", train), ("heldout", heldout)):
        (directory / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            spec = ClipSpec(frames, int(rng.integers(-max_offset, max_offset + 1)),
                            int(rng.integers(2**31)), size)
            name = f"{split}/clip-{index:04d}.{container}"
            write_video(directory / name, *render(spec))
            clips.append({"file": name, "split": split, "offset": spec.offset,
                          "frames": spec.frames, "seed": spec.seed})
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "fps": FPS, "sample_rate": SAMPLE_RATE,
                "max_offset": max_offset, "size": size, "seed": seed,
                "offset_sign": "offset o: video frame t shows the sound of audio frame t - o",
                "clips": clips}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest
