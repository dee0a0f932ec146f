"""The seed's transfer-learning API, as thin wrappers over mapper_core.

Same names, signatures and defaults as the seed's ``transfer_learning_utils``; the mapping
itself lives in the packaged rules file ``rules/to-fcn.yaml`` (rule set ``syncnet_fcn:to-fcn``).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from mapper_core.io.formats import builtin_formats
from mapper_core.io.formats.base import choose_format
from mapper_core.plan import make_plan
from mapper_core.rules import RuleSet, load_rules
from mapper_core.train.apply import apply_to_module, module_specs, param_groups
from mapper_core.train.freeze import freeze, unfreeze_all

from .report import (branch_counts, parameter_counts, render_freezing, render_parameter_summary,
                     render_transfer)

FREEZE_GROUP = "pretrained_conv"


def rules_path(name: str = "to-fcn") -> Path:
    """The packaged rules file of rule set ``syncnet_fcn:<name>``."""
    return Path(str(resources.files("syncnet_fcn") / "rules" / f"{name}.yaml"))


@lru_cache(maxsize=None)
def syncnet_rules(name: str = "to-fcn") -> RuleSet:
    return load_rules(rules_path(name))


def load_pretrained_syncnet(fcn_model: nn.Module, pretrained_syncnet_path: str | Path,
                            freeze_conv_layers: bool = True, verbose: bool = True) -> dict[str, Any]:
    """Load the original SyncNet's conv trunks into a SyncNetFCN (or its attention variant).

    Plans from headers first; refuses (PlanError) a plan with collisions or shape mismatches,
    so no conv bias can land in a BatchNorm bias. Returns counts plus the ``plan`` and the
    ``load_result`` (loaded / missing / unexpected / mismatched).
    """
    rules = syncnet_rules()
    path = Path(pretrained_syncnet_path)
    fmt = choose_format(path, builtin_formats())
    with fmt.open(path) as reader:
        plan = make_plan(reader.specs(), rules, module_specs(fcn_model),
                         source_origin=str(path), target_origin=type(fcn_model).__name__)
        result = apply_to_module(plan, fcn_model, reader)
    if verbose:
        print(render_transfer(plan, str(path)))
    if freeze_conv_layers:
        freeze_pretrained_layers(fcn_model, verbose=verbose)
    frozen, trainable = parameter_counts(fcn_model)
    (audio_loaded, audio_skipped), (video_loaded, video_skipped) = (
        branch_counts(plan, "netcnnaud"), branch_counts(plan, "netcnnlip"))
    if verbose:
        print(render_parameter_summary(fcn_model))
    return {
        "checkpoint_entries": plan.source_count,
        "audio_loaded": audio_loaded, "audio_skipped": audio_skipped,
        "video_loaded": video_loaded, "video_skipped": video_skipped,
        "fc_skipped": sum(1 for s in plan.skipped if s.pattern is not None),
        "unmatched": len(plan.unmatched), "missing": len(result.missing),
        "frozen_params": frozen, "trainable_params": trainable,
        "plan": plan, "load_result": result,
    }


def freeze_pretrained_layers(fcn_model: nn.Module, verbose: bool = True) -> int:
    """Freeze the ``pretrained_conv`` group (both conv trunks); returns the frozen value count.

    Unlike the seed (``requires_grad`` only), the trunks' BatchNorm layers stay in eval mode
    too, so their running statistics do not drift (see :mod:`mapper_core.train.freeze`).
    """
    freeze(fcn_model, syncnet_rules(), [FREEZE_GROUP])
    if verbose:
        print(render_freezing(fcn_model))
    return parameter_counts(fcn_model)[0]


def unfreeze_all_layers(fcn_model: nn.Module, verbose: bool = True) -> int:
    """Make every parameter trainable and let frozen BatchNorm layers learn statistics again;
    returns the trainable value count."""
    unfreeze_all(fcn_model)
    if verbose:
        print_trainable_summary(fcn_model)
    return parameter_counts(fcn_model)[1]


def get_optimizer_param_groups(fcn_model: nn.Module, pretrained_lr: float = 1e-5,
                               new_layers_lr: float = 1e-3) -> list[dict[str, Any]]:
    """Optimizer groups: ``pretrained_conv`` at ``pretrained_lr``, ``new_layers`` at ``new_layers_lr``."""
    return param_groups(fcn_model, syncnet_rules(), overrides={
        "pretrained_conv": {"lr": pretrained_lr}, "new_layers": {"lr": new_layers_lr}})


def print_trainable_summary(model: nn.Module) -> None:
    """Print frozen / trainable / total parameter counts (the seed's summary block)."""
    print(render_parameter_summary(model))
