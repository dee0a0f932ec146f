"""Whether a paired square matrix must be transposed: its shape cannot say, so its neighbours do.

A Linear stores its weight [out, in]; GPT-2's ``Conv1D`` stores it [in, out]. For a non-square
matrix the pairing itself shows the orientation (the bias fixes which module it is, and the weight
then fits straight or transposed). A square one fits both ways, so it follows the non-square
matrices paired nearest to it: those of its own container, else of the enclosing one, and so on
up to the whole model. Where those disagree, it is kept as stored and the evidence says so.
Layouts that really are straight (a Linear → Linear rename) have only straight evidence, so
their square matrices are never transposed. No torch.
"""
from __future__ import annotations

from typing import Iterable

from .fit import SAME, TRANSPOSED, ModuleFit
from .structure import Module

_MATRIX_KINDS = ("linear", "unknown")  # a bias-less matrix may be an Embedding: never evidence


def _weight(m: Module):
    w = dict(m.members).get("weight")
    return w if w is not None and len(w.shape) == 2 and m.kind in _MATRIX_KINDS else None


class Orientation:
    """The straight and transposed non-square matrices of each paired source container."""

    def __init__(self, links: Iterable[tuple[str, Iterable[tuple[Module, Module, ModuleFit]]]]):
        self._counts: dict[str, list[int]] = {}  # source container → [straight, transposed]
        for path, matches in links:
            for ms, _, fit in matches:
                w = _weight(ms)
                if w is None or w.shape[0] == w.shape[1]:
                    continue
                how = next(h for name, _, h in fit.steps if name == "weight")
                if how in (SAME, TRANSPOSED):
                    self._counts.setdefault(path, [0, 0])[how == TRANSPOSED] += 1
        self._decided: dict[str, tuple[bool | None, str]] = {}

    def decide(self, path: str) -> tuple[bool | None, str]:
        """For a square matrix in source container ``path``: (transpose it?, the evidence in words);
        None when no non-square matrix was paired in it or around it, or those disagree."""
        if path not in self._decided:
            self._decided[path] = self._decide(path)
        return self._decided[path]

    def _decide(self, path: str) -> tuple[bool | None, str]:
        scope = path
        while True:
            straight = flipped = 0
            for p, (a, b) in self._counts.items():
                if not scope or p == scope or p.startswith(scope + "."):
                    straight, flipped = straight + a, flipped + b
            where = f"'{scope}'" if scope else "the model"
            if straight and flipped:
                return None, (f"square matrix kept as stored: the other matrices of {where} disagree "
                              f"({flipped} transposed, {straight} not); check it with `mapper verify`")
            if flipped:
                return True, f"square matrix transposed like the other matrices of {where}"
            if straight:
                return False, ""
            if not scope:
                return None, ""
            scope = scope.rpartition(".")[0]
