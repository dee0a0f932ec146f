"""How far the whole-clip audio trunk is from the exact per-window one, on a real clip.

    .venv/bin/python plugins/syncnet_fcn/benchmarks/bench_audio.py CLIP [--work /tmp/syncnet-bench]

The audio trunk of ``SyncNetFCN`` in both modes (``clip``: once over the clip; ``window``:
every 20-column window alone, exactly as ``netcnnaud``) on the clip's MFCC, with three sets of
trunk weights: PyTorch's default initialisation, the unit-scale stand-in
(``make_syncnet_checkpoint``) and the media-scale stand-in (``media_scale=True``, what the
sub-commands use). Prints the cosine between the two modes' 512-d features per step (mean,
5th percentile) and the CPU time of each mode.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def agreement(models: dict, features) -> dict:
    import torch

    from syncnet_fcn.inference import eval_mode

    audio, results, out = features[None, None], {}, {}
    for mode, model in models.items():
        with torch.no_grad(), eval_mode(model):
            started = time.process_time()
            out[mode] = model.audio_encoder.trunk(audio)[0]  # [512, steps]
            results[f"cpu_seconds_{mode}"] = time.process_time() - started
    cosine = torch.nn.functional.cosine_similarity(out["clip"], out["window"], dim=0)
    results.update(mean=float(cosine.mean()), p5=float(cosine.quantile(0.05)), steps=int(cosine.numel()))
    return results


def run(clip: Path, work: Path) -> dict:
    import torch

    from syncnet_fcn.checkpoints import transfer_trunks
    from syncnet_fcn.fcn import SyncNetFCN
    from syncnet_fcn.features import mfcc
    from syncnet_fcn.media import read_clip
    from syncnet_fcn.models import MFCC_PER_FRAME, make_syncnet_checkpoint

    features = mfcc(read_clip(clip).audio)
    features = features[:, :features.shape[1] // MFCC_PER_FRAME * MFCC_PER_FRAME]  # 4T columns: T − 4 steps
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, media_scale in (("default init", None), ("unit-scale stand-in", False),
                              ("media-scale stand-in", True)):
        models = {}
        for mode in ("clip", "window"):
            torch.manual_seed(0)  # the same default initialisation in both modes
            models[mode] = SyncNetFCN(audio_mode=mode)
            if media_scale is not None:
                path = work / f"syncnet_standin_{'media' if media_scale else 'unit'}.model"
                if not path.exists():
                    make_syncnet_checkpoint(path, seed=0, media_scale=media_scale)
                transfer_trunks(models[mode], path)
        results[name] = r = agreement(models, features)
        print(f"  {name:21s} cosine clip vs window: mean {r['mean']:.3f}, 5th percentile {r['p5']:.3f} "
              f"over {r['steps']} steps; CPU s clip {r['cpu_seconds_clip']:.2f}, window {r['cpu_seconds_window']:.2f}",
              flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/syncnet-bench"))
    args = parser.parse_args(argv)
    run(args.clip, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
