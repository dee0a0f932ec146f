"""Freeze groups that freeze BatchNorm statistics too, not only ``requires_grad``.

``requires_grad = False`` stops the optimizer, but a BatchNorm layer in training mode still
updates ``running_mean`` / ``running_var`` / ``num_batches_tracked`` on every forward pass,
so a "frozen" pretrained trunk drifts towards the new data's statistics. Here a frozen norm
layer is kept in eval mode: a forward pre-hook switches it to eval right before each
forward. A hook is used rather than an overridden ``train()`` because it survives any
number of ``model.train()`` calls, survives ``copy.deepcopy``, and is removed cleanly.
The hook's handle is kept on the layer itself (torch offers no public way to find or remove
a hook without it); ``copy.deepcopy`` copies it along with the hook, so a copied model's
handle removes the copy's hook.

A norm layer counts as frozen when all its parameters are in the frozen groups; a layer
without parameters (``affine=False``) counts when its ``running_mean`` key is matched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from .apply import frozen_names
from .checks import check_groups, check_module, check_ruleset
from ..rules.ruleset import RuleSet

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class FreezeChange:
    """What a freeze or unfreeze call changed: parameter names and norm-layer module names."""

    params: tuple[str, ...]
    norm_layers: tuple[str, ...]


def norm_types() -> tuple[type, ...]:
    """The module types whose running statistics are frozen (lazy variants subclass these)."""
    from torch import nn

    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


# the attribute on a frozen norm layer that holds its hook's RemovableHandle
HANDLE_ATTR = "_mapper_core_keep_eval_handle"


def _keep_eval(module: "nn.Module", args: tuple) -> None:
    # A module-level function, so a model holding it can be pickled and deep-copied.
    module.training = False


def stats_frozen(module: "nn.Module") -> bool:
    """True when ``module`` carries the hook that keeps it in eval mode."""
    return getattr(module, HANDLE_ATTR, None) is not None


def freeze_stats(module: "nn.Module") -> bool:
    """Keep one norm layer in eval mode from now on; False when it already was."""
    module.training = False
    if stats_frozen(module):
        return False
    setattr(module, HANDLE_ATTR, module.register_forward_pre_hook(_keep_eval))
    return True


def unfreeze_stats(module: "nn.Module", training: bool) -> bool:
    """Remove the eval hook and set the layer's mode to ``training``; False when there was none."""
    handle = getattr(module, HANDLE_ATTR, None)
    if handle is not None:
        handle.remove()
        delattr(module, HANDLE_ATTR)
    module.training = training
    return handle is not None


def frozen_norm_layers(module: "nn.Module") -> list[str]:
    """Names of the submodules whose statistics are frozen."""
    return [n for n, m in module.named_modules() if stats_frozen(m)]


def norm_layers_in(module: "nn.Module", names: Iterable[str], ruleset: RuleSet | None = None,
                   groups: Iterable[str] | None = None) -> list[str]:
    """Norm layers covered by the parameter ``names``; parameterless layers by the groups' patterns."""
    chosen = set(names)
    patterns = (ruleset.freeze if groups is None else tuple(ruleset.freeze_group(g) for g in groups)) \
        if ruleset is not None else ()
    kinds = norm_types()
    found = []
    for name, m in module.named_modules():
        if not isinstance(m, kinds):
            continue
        prefix = f"{name}." if name else ""
        params = [prefix + p for p, _ in m.named_parameters(recurse=False)]
        if params:
            covered = all(p in chosen for p in params)
        else:
            covered = any(g.matches(prefix + "running_mean") for g in patterns)
        if covered:
            found.append(name)
    return found


def freeze(module: "nn.Module", ruleset: RuleSet, groups: Iterable[str] | None = None) -> FreezeChange:
    """Freeze the named groups (all when None): ``requires_grad = False`` and norm statistics.

    Returns the parameters whose ``requires_grad`` changed and the norm layers newly frozen.
    ``groups``: names, or one name as a str. Raises BadInputError for an unknown group name.
    """
    check_module(module, "freeze")
    check_ruleset(ruleset, "freeze")
    groups = check_groups(groups, "freeze")
    names = set(frozen_names(module, ruleset, groups))
    changed = []
    for n, p in module.named_parameters():
        if n in names and p.requires_grad:
            p.requires_grad_(False)
            changed.append(n)
    layers = dict(module.named_modules())
    norms = [n for n in norm_layers_in(module, names, ruleset, groups) if freeze_stats(layers[n])]
    return FreezeChange(tuple(changed), tuple(norms))


def unfreeze(module: "nn.Module", ruleset: RuleSet, groups: Iterable[str] | None = None) -> FreezeChange:
    """Undo :func:`freeze` for the named groups (all when None); norm layers follow ``module.training``.

    A parameter in two groups becomes trainable when either is unfrozen.
    """
    check_module(module, "unfreeze")
    check_ruleset(ruleset, "unfreeze")
    groups = check_groups(groups, "unfreeze")
    names = set(frozen_names(module, ruleset, groups))
    changed = []
    for n, p in module.named_parameters():
        if n in names and not p.requires_grad:
            p.requires_grad_(True)
            changed.append(n)
    layers = dict(module.named_modules())
    norms = [n for n in norm_layers_in(module, names, ruleset, groups)
             if unfreeze_stats(layers[n], module.training)]
    return FreezeChange(tuple(changed), tuple(norms))


def unfreeze_all(module: "nn.Module") -> FreezeChange:
    """Make every parameter trainable and every frozen norm layer follow ``module.training`` again."""
    changed = [n for n, p in module.named_parameters() if not p.requires_grad]
    for p in module.parameters():
        p.requires_grad_(True)
    norms = [n for n, m in module.named_modules() if stats_frozen(m) and unfreeze_stats(m, module.training)]
    return FreezeChange(tuple(changed), tuple(norms))
