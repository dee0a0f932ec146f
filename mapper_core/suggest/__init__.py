"""Stage between plan and io, header-only: pair two models by structure, names and shapes, and
write the rules file that maps one into the other (``mapper suggest``). No torch.

    from mapper_core.suggest import suggest
    result = suggest(source_specs, target_specs, target_types=types)
    print(result.text)
"""
from .order import OrderOnly
from .pairing import Ambiguity, Left, Link, Pair, Pairing, pair_models
from .suggest import Suggestion, suggest

__all__ = ["Ambiguity", "Left", "Link", "OrderOnly", "Pair", "Pairing", "Suggestion", "pair_models", "suggest"]
