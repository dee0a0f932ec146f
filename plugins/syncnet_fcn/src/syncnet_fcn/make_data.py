"""``python -m syncnet_fcn make-data DIR``: synthetic talking-mouth clips with known offsets.

    python -m syncnet_fcn make-data data/synth [--train 48] [--heldout 16] [--seconds 3]
                                               [--max-offset 15] [--seed 0] [--container mkv|mp4]

Writes ``DIR/train/clip-NNNN.mkv``, ``DIR/heldout/clip-NNNN.mkv`` and ``DIR/manifest.json``
(file, split, offset in frames, frame count and seed per clip). See
:mod:`syncnet_fcn.synthetic` for what the clips show and the offset's sign.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from .errors import InputError, run_command
from .features import FPS
from .synthetic import CONTAINERS, MANIFEST, make_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m syncnet_fcn make-data", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="folder to write (created if missing)")
    parser.add_argument("--train", type=int, default=48, help="training clips (48)")
    parser.add_argument("--heldout", type=int, default=16, help="held-out clips for accuracy (16)")
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length in seconds (3.0)")
    parser.add_argument("--max-offset", type=int, default=15, help="offsets are drawn from -K..K (15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole dataset (0)")
    parser.add_argument("--container", choices=sorted(CONTAINERS), default="mkv",
                        help="mkv: H.264 + PCM (exact offsets, default); mp4: H.264 + AAC")
    parser.add_argument("--force", action="store_true", help="write into a folder that already has a manifest")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.train < 1 or args.heldout < 0:
        raise InputError(f"--train must be ≥ 1 and --heldout ≥ 0, got {args.train} and {args.heldout}")
    if args.max_offset < 0:
        raise InputError(f"--max-offset must be ≥ 0, got {args.max_offset}")
    frames = round(args.seconds * FPS)
    if frames < 2 * args.max_offset + 5:
        raise InputError(f"--seconds {args.seconds} gives {frames} frames; offsets up to ±{args.max_offset} "
                         f"need at least {2 * args.max_offset + 5} frames ({(2 * args.max_offset + 5) / FPS:.2f} s)")
    if args.directory.exists() and not args.directory.is_dir():
        raise InputError(f"{args.directory}: exists and is not a folder; pick another path")
    if (args.directory / MANIFEST).exists() and not args.force:
        raise InputError(f"{args.directory}: already holds a dataset ({MANIFEST}); pass --force to "
                         f"overwrite it or pick another folder")
    started = time.perf_counter()
    try:
        manifest = make_dataset(args.directory, args.train, args.heldout, args.seconds, args.max_offset,
                                args.seed, args.container)
    except OSError as exc:
        raise InputError(f"{args.directory}: cannot write the dataset ({exc})") from None
    offsets = Counter(c["offset"] for c in manifest["clips"])
    print(f"Wrote {len(manifest['clips'])} clips ({args.train} train, {args.heldout} held out) of "
          f"{frames} frames to {args.directory} in {time.perf_counter() - started:.1f} s")
    print(f"Offsets -{args.max_offset}..{args.max_offset}: {len(offsets)} distinct values; "
          f"manifest: {args.directory / MANIFEST}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("python -m syncnet_fcn make-data", run, build_parser().parse_args(argv))
