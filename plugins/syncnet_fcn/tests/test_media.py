"""Decoding real files with PyAV: 25 fps, 224×224 BGR, 16 kHz audio aligned to the first frame."""
from __future__ import annotations

import numpy as np
import pytest

from syncnet_fcn.media import MediaError, iter_media, read_clip
from syncnet_fcn.synthetic import write_video
from syncnet_media import tiny_clip  # tests/helpers


def clicks(frames: int, marked: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Black frames with white ones at ``marked``, silence with a click at each marked frame."""
    video = np.zeros((frames, 224, 224, 3), np.uint8)
    audio = np.zeros(frames * 640, np.int16)
    for t in marked:
        video[t] = 255
        audio[t * 640:t * 640 + 80] = 20000
    return video, audio


@pytest.mark.parametrize("suffix", ["mkv", "mp4"])  # PCM and AAC (whose priming FFmpeg removes)
def test_frames_and_audio_line_up_to_the_sample(tmp_path, suffix):
    path = write_video(tmp_path / f"clicks.{suffix}", *clicks(30, (7, 21)))
    clip = read_clip(path)
    assert clip.frames.shape == (30, 224, 224, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.int16 and clip.audio.size >= 30 * 640
    bright = np.flatnonzero(clip.frames.mean(axis=(1, 2, 3)) > 128)
    onsets = np.flatnonzero(np.diff((np.abs(clip.audio.astype(int)) > 5000).astype(int)) == 1) + 1
    assert bright.tolist() == [7, 21]
    assert onsets.tolist() == [7 * 640, 21 * 640]
    assert clip.source_fps == 25 and clip.seconds == pytest.approx(1.2)


def test_frames_keep_their_picture(tmp_path):
    path = tiny_clip(tmp_path / "face.mkv", frames=8)
    from syncnet_fcn.synthetic import ClipSpec, render
    original, _ = render(ClipSpec(8, 1, 0))
    decoded = read_clip(path).frames
    assert np.abs(decoded.astype(int) - original.astype(int)).mean() < 4  # H.264 at crf 17


def test_other_frame_rates_become_25_fps(tmp_path):
    import av

    path = tmp_path / "thirty.mkv"
    with av.open(str(path), "w") as out:  # 30 fps, each frame's grey level is its index × 8
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = 224
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0"}
        sound = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((224, 224, 3), 8 * i, np.uint8), format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        audio = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.int16), format="s16", layout="mono")
        audio.sample_rate, audio.pts = 16000, 0
        out.mux(sound.encode(audio))
        out.mux(sound.encode(None))
    clip = read_clip(path)
    source = np.round(clip.frames.mean(axis=(1, 2, 3)) / 8).astype(int)
    # one second at 30 fps → 25 frames: source frame i lands on tick round(i × 25/30), a tick
    # takes the last frame that landed on or before it (FFmpeg's fps filter)
    ticks = [int(np.floor(i * 25 / 30 + 0.5)) for i in range(30)]
    expected = [max(i for i in range(30) if ticks[i] <= k) for k in range(25)]
    assert clip.source_fps == pytest.approx(30)
    assert source.tolist() == expected


def test_crop_takes_the_centre_square(tmp_path):
    video = np.zeros((6, 240, 320, 3), np.uint8)
    video[:, :, 40:280] = 200  # the centre 240×240 square is bright, the side bands dark
    path = write_video(tmp_path / "wide.mkv", video, np.zeros(6 * 640, np.int16))
    cropped = read_clip(path, crop=True).frames
    squeezed = read_clip(path).frames
    assert cropped.shape == squeezed.shape == (6, 224, 224, 3)
    assert cropped[:, :, :8].mean() > 150  # no dark band left
    assert squeezed[:, :, :8].mean() < 50  # resized whole: the band is still there


def test_chunks_arrive_in_order_and_add_up(tmp_path):
    path = tiny_clip(tmp_path / "face.mkv", frames=20)
    chunks = list(iter_media(path, chunk_seconds=0.2))
    assert {kind for kind, _ in chunks} == {"audio", "video"}
    assert sum(len(c) for k, c in chunks if k == "video") == 20
    assert sum(c.size for k, c in chunks if k == "audio") == 20 * 640


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing.mp4", "no such file"),
    (lambda d: d, "is a folder"),
    (lambda d: (d / "notes.mp4").write_text("hello") and d / "notes.mp4", "cannot read it as a video"),
    (lambda d: tiny_clip(d / "silent.mkv", frames=6, audio=False), "has no audio track"),
])
def test_bad_files_are_named_with_what_to_do(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(MediaError, match=message) as caught:
        read_clip(path)
    assert str(path) in str(caught.value)
