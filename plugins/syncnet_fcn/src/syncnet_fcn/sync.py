"""``python -m syncnet_fcn sync VIDEO``: the audio-visual offset of a face-crop video.

    python -m syncnet_fcn sync talk.mp4 --checkpoint RUN [--model fcn|attention|original]
                                        [--json] [--plot out.png] [--crop] [--stream]

Face detection and tracking are out of scope: give a clip that already shows one face,
roughly centred (``--crop`` centre-crops a non-square frame first), as the original
pipeline's cropped clips do. Exit codes: 0 done, 2 bad input (the message says what to do).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .checkpoints import FCN_KINDS, load_fcn, load_original
from .errors import InputError, run_command
from .features import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, mfcc
from .inference import fcn_outputs, summarise, usable_frames
from .instance import summarise_probs
from .media import iter_media, read_clip
from .models import VIDEO_WINDOW
from .original import VSHIFT, evaluate_original, window_count
from .sync_report import SyncReport, from_fcn, from_original, render_text

MODELS = (*FCN_KINDS, "original")
TRUNCATED_BY = 0.1  # s: decoding ending this much before the length the file states is noted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m syncnet_fcn sync", description=__doc__.splitlines()[0],
                                     epilog="Face detection is out of scope: see docs/syncnet.md.")
    parser.add_argument("video", type=Path, help="a face-crop video with its sound (any format FFmpeg reads)")
    parser.add_argument("--checkpoint", type=Path,
                        help="a training run folder (train --out) or an original syncnet_v2.model "
                             "(default: a random stand-in, for trying the command)")
    parser.add_argument("--model", choices=MODELS,
                        help="fcn, attention, or original (sliding windows as syncnet_python); "
                             "default: the run's model, else fcn")
    parser.add_argument("--audio-mode", choices=("clip", "window"),
                        help="FCN audio trunk over the whole clip (default) or per 20-column window "
                             "(exactly the original's audio features, 5x the audio compute)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="draw offsets and confidence into this image")
    parser.add_argument("--crop", action="store_true", help="centre-crop to a square before resizing to 224x224")
    parser.add_argument("--stream", action="store_true",
                        help="read the file in chunks through StreamSync and print steps as they come")
    parser.add_argument("--chunk-seconds", type=float, default=0.2, help="chunk length for --stream (0.2)")
    parser.add_argument("--vshift", type=int, help=f"offset range of --model original ({VSHIFT})")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.model == "original" and args.stream:
        raise InputError("--stream runs StreamSync, which needs an FCN model (fcn or attention); the "
                         "original evaluates sliding windows over the whole clip")
    if args.model == "original" and args.audio_mode:
        raise InputError("--audio-mode applies to the FCN models; the original always runs per window")
    if args.chunk_seconds <= 0:
        raise InputError(f"--chunk-seconds must be positive, got {args.chunk_seconds}")
    if args.vshift is not None and args.model != "original":
        raise InputError(f"--vshift sets the offset range of --model original; the FCN models' range is "
                         f"their max_offset, set when the model was built (15 by default): drop --vshift "
                         f"or add --model original")
    if args.vshift is not None and args.vshift < 1:
        raise InputError(f"--vshift must be at least 1, got {args.vshift}")
    if args.plot is not None and not args.plot.parent.exists():
        raise InputError(f"--plot {args.plot}: the folder {args.plot.parent} does not exist; create it first")


def _too_short(path: Path, frames: int, samples: int, usable: int, need: int) -> InputError:
    return InputError(f"{path}: {frames} frames and {samples / SAMPLE_RATE:.2f} s of audio overlap for only "
                      f"{usable} frames ({usable / FPS:.2f} s); this needs at least {need} frames, and "
                      f"offsets up to ±15 frames want a few seconds; give a longer clip")


def _length_note(frames: int, samples: int, declared: float | None = None) -> list[str]:
    video, audio = frames / FPS, samples / SAMPLE_RATE
    notes = []
    if declared is not None and max(video, audio) < declared - TRUNCATED_BY:
        notes.append(f"the file says it lasts {declared:.2f} s, but decoding stopped at {max(video, audio):.2f} s "
                     "(a truncated or damaged file?); only what was decoded is analysed")
    if abs(video - audio) > 2 / FPS:
        notes.append(f"audio ({audio:.2f} s) and video ({video:.2f} s) differ in length; only their overlap is used")
    return notes


def _vshift_note(vshift: int, steps: int) -> list[str]:
    if vshift < steps:
        return []
    return [f"--vshift {vshift} reaches past the clip's {steps} steps: offsets beyond ±{steps - 1} compare the "
            "video only with the zero padding past the audio's ends (as syncnet_python does) and mean nothing"]


def sync_clip(args: argparse.Namespace, label: str) -> SyncReport:
    """The whole-clip path: decode everything, then run the chosen model."""
    clip = read_clip(args.video, crop=args.crop)
    features = mfcc(clip.audio) if clip.audio.size else torch.zeros(13, 0)
    notes = _length_note(len(clip.frames), clip.audio.size, clip.declared_seconds)
    if args.model == "original":
        vshift = VSHIFT if args.vshift is None else args.vshift
        model, model_notes = load_original(args.checkpoint)
        steps = window_count(len(clip.frames), clip.audio.size)
        if steps < 1:  # syncnet_python's min_length: the shorter of video and audio, in frames
            raise _too_short(args.video, len(clip.frames), clip.audio.size,
                             min(len(clip.frames), clip.audio.size // SAMPLES_PER_FRAME), VIDEO_WINDOW + 1)
        result = evaluate_original(model, features, clip.frames, clip.audio.size, vshift)
        return from_original(result, file=str(args.video), checkpoint=label, frames=steps + VIDEO_WINDOW,
                             notes=model_notes + notes + _vshift_note(vshift, steps), decoded=len(clip.frames))
    model, config, model_notes = load_fcn(args.checkpoint, args.model, args.audio_mode)
    usable = usable_frames(len(clip.frames), features.shape[1])
    if usable < VIDEO_WINDOW:
        raise _too_short(args.video, len(clip.frames), clip.audio.size, usable, VIDEO_WINDOW)
    probs, _, _ = fcn_outputs(model, features, clip.frames)
    return from_fcn(summarise(model, probs), probs, file=str(args.video), model=config.kind,
                    checkpoint=label, frames=usable, notes=model_notes + notes, decoded=len(clip.frames))


def sync_stream(args: argparse.Namespace, label: str) -> SyncReport:
    """The streaming path: chunks from the file through StreamSync, steps printed as they come."""
    from .stream import StreamSync

    model, config, notes = load_fcn(args.checkpoint, args.model, args.audio_mode)
    stream = StreamSync(model)
    steps = []
    try:
        for step in stream.run(iter_media(args.video, crop=args.crop, chunk_seconds=args.chunk_seconds)):
            steps.append(step)
            if args.json:
                print(json.dumps({"type": "step", "step": step.index, "time": round(step.time, 3),
                                  "offset": step.offset, "confidence": step.confidence}), flush=True)
            else:
                print(f"  {step.time:6.2f} s  step {step.index:5d}  offset {step.offset:+3d}  "
                      f"confidence {step.confidence:.3f}", flush=True)
    except InputError as exc:
        raise InputError(f"{args.video}: {exc}") from None
    probs = torch.stack([s.probs for s in steps], dim=1)
    valid = torch.stack([s.valid for s in steps], dim=1)
    result = summarise_probs(probs, valid, model.max_offset)
    return from_fcn(result, probs, file=str(args.video), model=config.kind, checkpoint=label,
                    frames=len(steps) + VIDEO_WINDOW - 1, notes=notes, decoded=stream.frames)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    label = str(args.checkpoint) if args.checkpoint else "stand-in weights"
    report = sync_stream(args, label) if args.stream else sync_clip(args, label)
    if args.json:
        document = report.as_json()
        print(json.dumps({"type": "summary", **document} if args.stream else document, indent=None if args.stream else 1))
    else:
        print(render_text(report))
    if args.plot is not None:
        from .plot import plot_report

        plot_report(report, args.plot)
        if not args.json:
            print(f"Plot: {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("python -m syncnet_fcn sync", run, build_parser().parse_args(argv))
