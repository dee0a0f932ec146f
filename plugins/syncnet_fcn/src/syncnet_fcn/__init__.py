"""syncnet_fcn: the SyncNet → SyncNetFCN plugin for mapper-core.

Holds the model definitions (the original ``SyncNet``, the fully-convolutional
``SyncNetFCN`` and its attention variant, ``SyncNetInstance_FCN``), the rule sets,
and the seed's transfer-learning API as thin wrappers over ``mapper_core``.

The package is loaded as a plugin when the CLI starts, so importing it must stay
cheap: the public names below are resolved lazily (PEP 562), and torch is imported
only when one of them is first used.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "SyncNet": ".models",
    "make_syncnet_checkpoint": ".models",
    "SyncNetFCN": ".fcn",
    "SyncNetFCN_WithAttention": ".attention",
    "SyncNetInstance_FCN": ".instance",
    "EvalResult": ".instance",
    "load_pretrained_syncnet": ".transfer",
    "freeze_pretrained_layers": ".transfer",
    "unfreeze_all_layers": ".transfer",
    "get_optimizer_param_groups": ".transfer",
    "print_trainable_summary": ".transfer",
    "StreamSync": ".stream",
    "StreamStep": ".stream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value  # cache: later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
