"""The SyncNet benchmarks (not run in CI; about 30 minutes on 2 CPU cores):

    .venv/bin/python plugins/syncnet_fcn/benchmarks/run.py [--work /tmp/syncnet-bench]
        [--seconds 60] [--stream-seconds 20] [--frozen-minutes 4] [--finetune-minutes 4]
        [--only speed,stream,train] [--repeats 2] [--modes fcn,original,...] [--one-call-seconds 4,8]

On a loaded machine, ``--repeats 1 --modes fcn,original,audio-clip,audio-window
--one-call-seconds ''`` keeps the speed part to the figures docs/syncnet.md quotes.

- speed: a 60 s clip through the FCN (what ``sync`` runs) and through the original's
  sliding-window evaluation, same trunk weights; time and peak memory per process; the two
  audio modes; the video trunk in one call (what the FCN's fixed calls avoid).
- stream: StreamSync latency per 0.2 s chunk, real-time factor, step delay, buffers, for the
  FCN and the attention variant.
- train: held-out offset accuracy curves for ``frozen``, ``finetune`` (after frozen) and
  ``finetune`` straight from the transferred trunks.

Everything is written under ``--work`` (clips, runs, ``results.json``); nothing in the
repository. The trunks come from a SyncNet-shaped stand-in (seed 0, BatchNorm statistics
measured at media scale), since the real
``syncnet_v2.model`` cannot be downloaded here; speed does not depend on the values.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_speed  # noqa: E402
import bench_stream  # noqa: E402
import bench_train  # noqa: E402
from measure import make_clip  # noqa: E402


def machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/syncnet-bench"))
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length for speed (60)")
    parser.add_argument("--stream-seconds", type=float, default=20.0, help="clip length for stream (20)")
    parser.add_argument("--frozen-minutes", type=float, default=4.0)
    parser.add_argument("--finetune-minutes", type=float, default=4.0)
    parser.add_argument("--only", default="speed,stream,train")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each speed mode, fastest kept (2)")
    parser.add_argument("--modes", default=",".join(bench_speed.MODES),
                        help="speed modes (default: all of " + ",".join(bench_speed.MODES) + ")")
    parser.add_argument("--one-call-seconds", default="4,8",
                        help="clip lengths for the video trunk in one call ('' skips it)")
    args = parser.parse_args(argv)
    from syncnet_fcn.models import make_syncnet_checkpoint

    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.work / "syncnet_standin.model"
    if not checkpoint.exists():
        make_syncnet_checkpoint(checkpoint, seed=0, media_scale=True)
    results = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    only = set(args.only.split(","))
    if "speed" in only:
        print(f"== speed: {args.seconds:g} s clip ==", flush=True)
        clip = make_clip(args.work / f"clip_{args.seconds:g}s.mkv", args.seconds)
        results["speed"] = bench_speed.run(clip, checkpoint, repeats=args.repeats,
                                           modes=tuple(args.modes.split(",")),
                                           one_call_seconds=tuple(float(x) for x in args.one_call_seconds.split(",") if x))
    if "stream" in only:
        print(f"== stream: {args.stream_seconds:g} s clip ==", flush=True)
        clip = make_clip(args.work / f"clip_{args.stream_seconds:g}s.mkv", args.stream_seconds)
        results["stream"] = bench_stream.run(clip, checkpoint)
    if "train" in only:
        print("== train ==", flush=True)
        results["train"] = bench_train.run(args.work, checkpoint, args.frozen_minutes, args.finetune_minutes)
    results["machine_after"] = machine()
    (args.work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.work / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
