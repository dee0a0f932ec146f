"""Stage above train: prove a mapping with activations (``mapper verify``). Needs torch.

Both models get their weights (the source as saved, the target through the plan) and the same
inputs; forward hooks on the modules the plan pairs record their outputs, and each pair is
compared: max abs diff, relative error, cosine similarity, and whether it is within tolerance.

    from mapper_core.activations import verify, render_text
    result = verify(ruleset, state, specs, source_model, target_model, inputs)
    print(render_text(result))
"""
from .compare import LeftBehind, ModuleResult, TiedKey, VerifyResult, compare_models, default_tolerance
from .inputs import make_inputs, parse_input
from .report import render_text
from .verify import verify

__all__ = ["LeftBehind", "ModuleResult", "TiedKey", "VerifyResult", "compare_models", "default_tolerance", "make_inputs",
           "parse_input", "render_text", "verify"]
