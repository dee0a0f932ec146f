"""verify benchmark (a script, not a test): .venv/bin/python tests/benchmarks/bench_verify.py

`mapper verify` of SyncNet → SyncNetFCN with the packaged `to-fcn-full` rules
(embedding_dim=1024, 30 paired modules) on one window (--input 1x1x13x20 --input
1x3x5x224x224), run in-process through the CLI, against the goal (≤ 20 s). The baseline,
measured in the same run: building both models and one plain forward pass of each on the same
inputs, without hooks or loading, so the ratio says what verify adds.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from mapper_core.cli import main as mapper  # noqa: E402

GOAL_SECONDS = 20.0


def baseline() -> float:
    from syncnet_fcn import SyncNet, SyncNetFCN

    start = time.perf_counter()
    source, target = SyncNet().eval(), SyncNetFCN(embedding_dim=1024).eval()
    audio, video = torch.randn(1, 1, 13, 20), torch.randn(1, 3, 5, 224, 224)
    with torch.no_grad():
        source.forward_aud(audio), source.forward_lip(video)
        target(audio, video)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    args = ap.parse_args()
    from syncnet_fcn import SyncNet

    with tempfile.TemporaryDirectory() as folder:
        ckpt = Path(folder) / "syncnet.safetensors"
        torch.manual_seed(0)
        save_file(SyncNet().state_dict(), str(ckpt))
        argv = ["verify", "--rules", "syncnet_fcn:to-fcn-full", "--source", str(ckpt), "--source-model",
                "model:syncnet", "--target-model", "model:syncnet-fcn", "--model-arg", "embedding_dim=1024",
                "--input", "1x1x13x20", "--input", "1x3x5x224x224"]
        times, code = [], None
        for _ in range(args.repeat):
            out = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stdout(out):
                code = mapper(argv)
            times.append(time.perf_counter() - start)
        base = min(baseline() for _ in range(args.repeat))
    seconds = min(times)
    print(f"verify exit {code}: {out.getvalue().strip().splitlines()[-1].strip()}")
    print(f"verify        {seconds:7.2f} s   (goal ≤ {GOAL_SECONDS:.0f} s: {'met' if seconds <= GOAL_SECONDS else 'MISSED'})")
    print(f"build + run   {base:7.2f} s   (baseline; verify / baseline = {seconds / base:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
