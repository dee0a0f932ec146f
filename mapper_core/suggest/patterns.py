"""Keys left out of a pairing → short full-match patterns (``netfcaud\\..*``), each with its reason.

A pattern covers a whole container, else a whole module, else one key, and only when it takes
no key that must not be taken (a mapped source key for ``skip:``, a filled target key for
``new:``). Containers and modules that differ only in their numbers and share a reason are
written once with ``\\d+``.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .pairing import Left


@dataclass(frozen=True)
class Pattern:
    pattern: str
    reason: str
    keys: tuple[str, ...]


def left_patterns(left: Sequence[Left], all_keys: Iterable[str]) -> list[Pattern]:
    """Patterns that take exactly the ``left`` keys among ``all_keys``, in key order."""
    keys = list(all_keys)
    left_set = {x.key for x in left}
    reasons = {x.key: x.reason for x in left}
    patterns: list[Pattern] = []
    done: set[str] = set()
    by_text = sorted(keys)
    order = {k: i for i, k in enumerate(keys)}
    for x in left:
        if x.key in done:
            continue
        for candidate, prefix in _candidates(x.key):
            compiled = re.compile(candidate)
            start = bisect.bisect_left(by_text, prefix)
            end = bisect.bisect_left(by_text, prefix + "\U0010ffff")
            taken = sorted((k for k in by_text[start:end] if compiled.fullmatch(k)), key=order.__getitem__)
            if taken and all(k in left_set and k not in done for k in taken) and \
                    len({reasons[k] for k in taken}) == 1:
                break
        else:
            candidate, taken = re.escape(x.key), [x.key]
        patterns.append(Pattern(candidate, reasons[x.key], tuple(taken)))
        done.update(taken)
    return patterns


def _candidates(key: str) -> list[tuple[str, str]]:
    """From the widest to the narrowest: the container, the module (each also with numbers
    generalised), then nothing (the caller falls back to the key itself); each with the literal
    text every key it takes starts with."""
    parts = key.split(".")
    found = []
    for cut in (len(parts) - 2, len(parts) - 1):
        if cut < 1:
            continue
        prefix = parts[:cut]
        general = r"\.".join(r"\d+" if p.isdigit() else re.escape(p) for p in prefix)
        exact = r"\.".join(re.escape(p) for p in prefix)
        literal = ".".join(prefix[:next((i for i, p in enumerate(prefix) if p.isdigit()), len(prefix))])
        found.append((general + r"\..*", literal))
        if exact != general:
            found.append((exact + r"\..*", ".".join(prefix)))
    return found
