"""What the names of sibling modules say about pairing them, among siblings of the same shapes.

Only what tells the candidates apart counts. Letters every candidate shares (the ``norm`` of
``attention_norm`` and ``ffn_norm``) say nothing about which of them a source module is, however
similar they make the names look. And a word after ``pre``, ``post``, ``before`` or ``after``
names a neighbour, not the module: ``post_attention_layernorm`` is the norm after the attention
(the one before the MLP), so its ``attention`` is no evidence for ``attention_norm``. A pairing
that rests on letters (``attn`` ~ ``attention``) rather than on a whole word its rivals lack is
weak (:mod:`.weak`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

from .structure import word_trigrams, words

_NEIGHBOUR = frozenset({"pre", "post", "before", "after"})  # the next word is where, not what


def own_words(name: str) -> tuple[str, ...]:
    """The words of ``name`` that describe the module itself: a word after a neighbour word is
    left out, unless it is the last (``pre_norm`` is a norm)."""
    found = words(name)
    kept, drop = [], False
    for k, w in enumerate(found):
        if not drop:
            kept.append(w)
        drop = w in _NEIGHBOUR and k + 2 < len(found) and not drop
    return tuple(kept)


def name_scores(a: Sequence[str], b: Sequence[str], fits: Iterable[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """Name similarity (Dice coefficient of letter trigrams of their own words) of each fitting
    pair of ``a`` and ``b`` counting only the trigrams that tell candidates apart: those the other
    candidates of either one do not all share."""
    fits = list(fits)
    grams_a = [word_trigrams(own_words(x)) for x in a]
    grams_b = [word_trigrams(own_words(y)) for y in b]
    of_a: dict[int, list[frozenset[str]]] = {}
    of_b: dict[int, list[frozenset[str]]] = {}
    for i, j in fits:
        of_a.setdefault(i, []).append(grams_b[j])
        of_b.setdefault(j, []).append(grams_a[i])
    common_a, common_b = _common(of_a), _common(of_b)
    scores = {}
    for i, j in fits:
        total = len(grams_a[i]) + len(grams_b[j])
        telling = (grams_a[i] & grams_b[j]) - common_a[i] - common_b[j]
        scores[(i, j)] = 2 * len(telling) / total if total else 0.0
    return scores


def telling_word(x: str, y: str, rivals_of_x: Iterable[str], rivals_of_y: Iterable[str]) -> str | None:
    """A word (or number) of ``x``'s own words that ``y`` has too and none of ``x``'s other
    candidates nor ``y``'s other candidates has: strong name evidence; else None. A word cut
    short counts as the word (``tok`` and ``tokens``, ``embed`` and ``embeddings``)."""
    others = [w for name in (*rivals_of_x, *rivals_of_y) for w in own_words(name)]
    shared = [w for w in own_words(x) if any(_same_word(w, v) for v in own_words(y))
              and not any(_same_word(w, v) for v in others)]
    return shared[0] if shared else None


def _same_word(a: str, b: str) -> bool:
    """Equal, or one the other's first three letters or more (an abbreviation by cutting)."""
    short, long = sorted((a, b), key=len)
    return a == b or (len(short) >= 3 and not short.isdigit() and long.startswith(short))


def _common(candidates: dict[int, list[frozenset[str]]]) -> dict[int, frozenset[str]]:
    """Per module: the trigrams all of its candidates share, when it has more than one."""
    return {k: frozenset.intersection(*grams) if len(grams) > 1 else frozenset() for k, grams in candidates.items()}
