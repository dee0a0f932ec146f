"""Why FCN: one clip through the FCN against the original's sliding windows, same trunk weights.

Orchestrated by ``run.py``; a child run is ``python bench_speed.py MODE CLIP CHECKPOINT``:

- ``fcn``: ``fcn_outputs`` (what ``sync`` runs: uint8 frames converted one fixed call at a time)
- ``fcn-forward``: ``model(audio, video)`` on the whole clip as float tensors (what a Python
  caller writes; eval mode, so the model still runs fixed calls)
- ``fcn-window``: ``fcn_outputs`` with the exact per-window audio mode
- ``original``: syncnet_python's evaluation (5-frame windows, 20 per batch, vshift 15)
- ``audio-clip`` / ``audio-window``: the audio trunk alone in each mode
- ``one-call``: the video trunk in ONE call (no fixed calls), to show what they save
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import child, peak_rss_mb, report, table  # noqa: E402

MODES = ("fcn", "fcn-forward", "fcn-window", "original", "audio-clip", "audio-window")


def measure(mode: str, clip_path: Path, checkpoint: Path) -> dict:
    import torch

    from syncnet_fcn.checkpoints import load_fcn, load_original
    from syncnet_fcn.features import frames_tensor, mfcc
    from syncnet_fcn.inference import eval_mode, fcn_outputs, usable_frames
    from syncnet_fcn.media import read_clip
    from syncnet_fcn.original import evaluate_original

    torch.set_grad_enabled(False)
    started = time.perf_counter()
    clip = read_clip(clip_path)
    features = mfcc(clip.audio)
    decode = time.perf_counter() - started
    window = mode in ("fcn-window", "audio-window")
    if mode == "original":
        model, _ = load_original(checkpoint)
    else:
        model = load_fcn(checkpoint, "fcn", "window" if window else "clip")[0]
    usable = usable_frames(len(clip.frames), features.shape[1])
    if mode == "fcn-forward":  # the caller's tensors exist before the call
        audio = features[None, None, :, :4 * usable]
        video = frames_tensor(clip.frames[:usable])
    baseline = peak_rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    if mode in ("fcn", "fcn-window"):
        probs = fcn_outputs(model, features, clip.frames)[0]
        steps = probs.shape[1]
    elif mode == "fcn-forward":
        with eval_mode(model):
            steps = model(audio, video)[0].shape[2]
    elif mode == "original":
        steps = evaluate_original(model, features, clip.frames, clip.audio.size).dists.shape[0]
    else:
        with eval_mode(model):
            steps = model.audio_encoder.trunk(features[None, None, :, :4 * usable]).shape[2]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"mode": mode, "seconds": seconds, "cpu_seconds": cpu, "steps": steps, "ms_per_step": 1000 * seconds / steps,
            "clip_seconds": len(clip.frames) / 25, "decode_seconds": decode,
            "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
            "working_mb": peak_rss_mb() - baseline}


def one_call(seconds: float) -> dict:
    """The video trunk of a ``seconds`` clip in one call (random frames): peak memory."""
    import torch

    from syncnet_fcn.models import video_trunk

    torch.set_grad_enabled(False)
    trunk = video_trunk().eval()
    frames = torch.rand(1, 3, round(seconds * 25), 224, 224) * 255
    baseline = peak_rss_mb()
    started = time.perf_counter()
    trunk(frames)
    return {"mode": "one-call", "clip_seconds": seconds, "seconds": time.perf_counter() - started,
            "working_mb": peak_rss_mb() - baseline}


def run(clip: Path, checkpoint: Path, one_call_seconds: tuple[float, ...] = (4.0, 8.0),
        repeats: int = 2, modes: tuple[str, ...] = MODES) -> dict:
    """Every mode in its own process, the modes interleaved and repeated (the machine is
    shared, so load comes and goes); the fastest run of each mode is kept. CPU seconds
    (user + system, both threads) are reported beside wall seconds: on a loaded machine
    they say more about the work than the wall clock does."""
    results: dict[str, dict] = {}
    for round_ in range(repeats):
        for mode in modes:
            print(f"  speed: {mode} (run {round_ + 1}/{repeats}) …", flush=True)
            result = child("bench_speed.py", mode, clip, checkpoint)
            result["all_seconds"] = results.get(mode, {}).get("all_seconds", []) + [result["seconds"]]
            if mode not in results or result["seconds"] < results[mode]["seconds"]:
                results[mode] = result
            else:
                results[mode]["all_seconds"] = result["all_seconds"]
    for seconds in one_call_seconds:
        results[f"one-call-{seconds:g}s"] = child("bench_speed.py", "one-call", seconds)
    rows = [[m, f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}" if "cpu_seconds" in r else "",
             f"{r.get('ms_per_step', 0):.1f}", f"{r['working_mb']:.0f}", f"{r.get('peak_rss_mb', 0):.0f}"]
            for m, r in results.items()]
    print(table(rows, ["mode", "seconds", "CPU s", "ms/step", "working MB", "peak RSS MB"]))
    return {"runs": results, "summary": summarise(results)}


def summarise(results: dict) -> dict:
    """The ratios the docs quote, from whichever modes ran."""
    summary: dict = {}
    fcn, original = results.get("fcn"), results.get("original")
    if fcn:
        summary["clip_seconds"] = fcn["clip_seconds"]
        summary["real_time_factor_fcn"] = fcn["seconds"] / fcn["clip_seconds"]
    if fcn and original:
        summary["speedup_fcn_vs_original"] = original["seconds"] / fcn["seconds"]
        summary["cpu_speedup_fcn_vs_original"] = original["cpu_seconds"] / fcn["cpu_seconds"]
        print(f"  FCN {fcn['seconds']:.1f} s ({fcn['cpu_seconds']:.1f} CPU s) vs original "
              f"{original['seconds']:.1f} s ({original['cpu_seconds']:.1f} CPU s) on {fcn['clip_seconds']:.0f} s: "
              f"speed-up {summary['speedup_fcn_vs_original']:.2f}x wall, "
              f"{summary['cpu_speedup_fcn_vs_original']:.2f}x CPU", flush=True)
    if fcn and "fcn-window" in results:
        summary["window_audio_cost_seconds"] = results["fcn-window"]["seconds"] - fcn["seconds"]
    if "audio-clip" in results and "audio-window" in results:
        clip, window = results["audio-clip"], results["audio-window"]
        summary["audio_window_vs_clip"] = window["seconds"] / clip["seconds"]
        summary["cpu_audio_window_vs_clip"] = window["cpu_seconds"] / clip["cpu_seconds"]
        print(f"  per-window audio trunk: {summary['audio_window_vs_clip']:.1f}x the clip-mode audio trunk "
              f"({summary['cpu_audio_window_vs_clip']:.1f}x in CPU time)", flush=True)
    return summary


if __name__ == "__main__":
    if sys.argv[1] == "one-call":
        report(one_call(float(sys.argv[2])))
    else:
        report(measure(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
