"""The main job: SyncNet checkpoint → plan → safetensors → SyncNetFCN → freeze → summary.

    python -m syncnet_fcn [--checkpoint data/syncnet_v2.model] [--out DIR] [--attention]

and the sub-commands, each with its own ``--help`` (they need ``syncnet-fcn[video]``):

    python -m syncnet_fcn sync VIDEO        offsets of a face-crop video
    python -m syncnet_fcn make-data DIR     synthetic clips with known offsets
    python -m syncnet_fcn train DIR         train the FCN on such clips

Without ``--checkpoint`` a SyncNet-shaped checkpoint is built from our own ``SyncNet``
(fixed seed). The rule set is found through the plugin manager (``syncnet_fcn:to-fcn``),
exactly as an outside project's would be.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from mapper_core.errors import MapperError
from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.formats.aliases import load_safetensors
from mapper_core.plan import make_plan
from mapper_core.plugins import get_plugin_manager, resolve_rules
from mapper_core.train.apply import module_specs

from .attention import SyncNetFCN_WithAttention
from .fcn import SyncNetFCN
from .models import SyncNet, make_syncnet_checkpoint
from .report import render_transfer
from .transfer import freeze_pretrained_layers, print_trainable_summary


def video_trunk_difference(checkpoint_state: dict, model: torch.nn.Module, frames: int = 5) -> float:
    """Max |FCN video trunk − original netcnnlip| on one random 5-frame clip (eval mode)."""
    original = SyncNet()
    original.load_state_dict(checkpoint_state)
    original.eval()
    was_training = model.training
    model.eval()
    clip = torch.randn(1, 3, frames, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model.video_encoder.conv_layers(clip) - original.netcnnlip(clip)).abs().max()
    model.train(was_training)
    return float(diff)


def run(checkpoint: Path | None, out: Path, attention: bool = False) -> dict:
    """Run the whole transfer; prints the seed-style report and returns the figures."""
    started = time.perf_counter()
    if checkpoint is None:
        checkpoint = make_syncnet_checkpoint(out / "syncnet_example.model", seed=0)
        print(f"Built a SyncNet-shaped checkpoint (seed 0): {checkpoint}")
    rules = resolve_rules("syncnet_fcn:to-fcn", get_plugin_manager())
    model = (SyncNetFCN_WithAttention if attention else SyncNetFCN)()
    destination = out / "syncnet_fcn_init.safetensors"
    with open_checkpoint(checkpoint) as reader:
        plan = make_plan(reader.specs(), rules, module_specs(model),
                         source_origin=str(checkpoint), target_origin=type(model).__name__)
        print(render_transfer(plan, str(checkpoint)))
        result = convert(checkpoint, destination, reader=reader, plan=plan, force=True, verify=True,
                         rules_sha256=rules.sha256)
    print(f"\nWrote {result.destination}: {result.tensors} tensors, {result.tensor_bytes:,} bytes, "
          f"{result.checked} verified bit for bit; {result.left_behind} source keys left behind")
    converted = load_safetensors(destination)
    unexpected = model.load_state_dict(converted, strict=False).unexpected_keys
    if unexpected:
        raise RuntimeError(f"converted file has keys the model lacks: {unexpected}")
    # torch's missing_keys leaves out BatchNorm num_batches_tracked; count every state entry
    missing = [k for k in model.state_dict() if k not in converted]
    print(f"Loaded into {type(model).__name__}: {result.tensors} tensors; "
          f"{len(missing)} new-layer tensors keep their initialisation")
    freeze_pretrained_layers(model, verbose=True)
    with open_checkpoint(checkpoint) as reader:
        state = {k: reader.get_tensor(k) for k in reader.specs()}
    diff = video_trunk_difference(state, model)
    print(f"Check: video trunk vs original netcnnlip on a 5-frame clip, max |diff| = {diff:.2e}")
    print_trainable_summary(model)
    seconds = time.perf_counter() - started
    print(f"Done in {seconds:.1f} s.")
    return {"plan": plan, "convert": result, "missing": len(missing), "video_diff": diff, "seconds": seconds}


# sub-command -> module with its own main(argv); imported only when asked for
COMMANDS = {"sync": ".sync", "make-data": ".make_data", "train": ".train_cli"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        import importlib

        return importlib.import_module(COMMANDS[argv[0]], __package__).main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m syncnet_fcn", description=__doc__.splitlines()[0],
        epilog="sub-commands: sync VIDEO, make-data DIR, train DIR (each has --help)")
    parser.add_argument("--checkpoint", type=Path, help="a real syncnet_v2.model (default: build one)")
    parser.add_argument("--out", type=Path, help="folder for the outputs (default: a temporary folder)")
    parser.add_argument("--attention", action="store_true", help="use SyncNetFCN_WithAttention")
    args = parser.parse_args(argv)
    try:
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            run(args.checkpoint, args.out, args.attention)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                run(args.checkpoint, Path(tmp), args.attention)
                print("(outputs were temporary; pass --out DIR to keep them)")
    except MapperError as exc:
        print(f"syncnet_fcn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
