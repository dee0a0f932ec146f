"""Keys as text for people: :func:`shown` lives in :mod:`mapper_core.text`, below every stage, so
that the readers and ``inspect`` escape keys without importing the plan stage."""
from ..text import shown

__all__ = ["shown"]
