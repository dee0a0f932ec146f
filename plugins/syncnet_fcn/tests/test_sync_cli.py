"""``python -m syncnet_fcn sync``: every model on a real file, JSON, plot, stream, and bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from syncnet_media import syncnet, tiny_clip  # tests/helpers

FRAMES = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("sync") / "talk.mkv", frames=FRAMES, offset=2)


def run_json(*args):
    done = syncnet("sync", *args, "--json")
    assert done.returncode == 0, done.stderr
    return done, json.loads(done.stdout)


@pytest.mark.parametrize("model", ["fcn", "attention", "original"])
def test_every_model_reports_offset_confidence_and_steps(clip, model):
    done, report = run_json(clip, "--model", model)
    assert report["model"] == model and report["file"] == str(clip)
    k = 15
    assert report["offsets"] == list(range(-k, k + 1))
    assert -k <= report["offset"] <= k and report["offset_ms"] == 40 * report["offset"]
    measure = "mean_distance" if model == "original" else "mean_probability"
    assert len(report[measure]) == 2 * k + 1
    # FCN: T − 4 steps of the usable 11 frames (the MFCC of 12 frames of audio covers 11);
    # original: min_length − 5, as syncnet_python
    assert len(report["steps"]) == (FRAMES - 5 if model == "original" else FRAMES - 1 - 4)
    assert all(-k <= s["offset"] <= k for s in report["steps"])
    assert any("stand-in" in note for note in report["notes"])  # no checkpoint: said loudly


def test_text_output_and_plot(clip, tmp_path):
    done = syncnet("sync", clip, "--plot", tmp_path / "out.png")
    assert done.returncode == 0, done.stderr
    assert "AV offset:" in done.stdout and "Confidence:" in done.stdout and "Per-step offsets" in done.stdout
    png = (tmp_path / "out.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_stream_prints_steps_and_the_same_summary(clip):
    whole = run_json(clip)[1]
    done = syncnet("sync", clip, "--stream", "--json", "--chunk-seconds", 0.12)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [x["type"] for x in lines] == ["step"] * len(whole["steps"]) + ["summary"]
    summary = lines[-1]
    assert summary["offset"] == whole["offset"]
    assert [s["offset"] for s in summary["steps"]] == [s["offset"] for s in whole["steps"]]
    assert summary["confidence"] == pytest.approx(whole["confidence"], abs=1e-5)


def test_window_audio_mode_runs(clip):
    assert run_json(clip, "--audio-mode", "window")[1]["model"] == "fcn"


@pytest.mark.parametrize(("args", "message"), [
    (["{d}/missing.mp4"], "missing.mp4: no such file"),
    (["{silent}"], "has no audio track"),
    (["{short}"], "at least 5 frames"),
    (["{short}", "--model", "original"], "overlap for only 5 frames (0.20 s); this needs at least 6 frames"),
    (["{clip}", "--model", "original", "--stream"], "needs an FCN model"),
    (["{clip}", "--checkpoint", "{d}/nothing.model"], "no such checkpoint"),
    (["{clip}", "--checkpoint", "{clip}"], "cannot read it as a checkpoint"),
    (["{clip}", "--plot", "{d}/no/such/dir/x.png"], "does not exist"),
])
def test_bad_input_exits_2_with_a_message_naming_it(clip, tmp_path, args, message):
    paths = {"d": tmp_path, "clip": clip,
             "silent": tiny_clip(tmp_path / "silent.mkv", frames=8, audio=False),
             "short": tiny_clip(tmp_path / "short.mkv", frames=5)}
    done = syncnet("sync", *[a.format(**paths) for a in args])
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("python -m syncnet_fcn sync: error: ")


def test_the_real_process_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "syncnet_fcn", "sync", str(tmp_path / "gone.mp4")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "gone.mp4: no such file" in done.stderr and "Traceback" not in done.stderr
