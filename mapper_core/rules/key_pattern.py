r"""Rules patterns matched in time linear in the key: RE2, with Python's ``re`` as the referee.

A pattern is written (and checked, and read for the matcher's index) in Python ``re`` syntax.
Python's engine backtracks, so ``(a+)+$`` takes 2**n steps on a key of n characters; RE2 never
backtracks. :class:`KeyPattern` therefore matches with RE2 a translation made from Python's own
syntax tree (:func:`~mapper_core.rules.regex_syntax.to_re2`): the same groups in the same
order, and classes whose members Python's engine decided. Where RE2 has no exact equivalent
(lookarounds, backreferences, ...), Python's ``re`` matches, but only patterns whose
backtracking is bounded (:func:`~mapper_core.rules.regex_cost.backtracking_risk`); any other
is refused with :class:`UnboundedPattern` when the rules are checked. Most key patterns
(``blocks\.(\d+)\.(.+)``) are linear in Python's ``re`` by construction
(:func:`~mapper_core.rules.regex_cost.linear_in_re`); those skip RE2, whose calls cost more.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable, Iterator

from .regex_cost import backtracking_risk, linear_in_re
from .regex_syntax import NoLinearForm, compile_pattern, to_re2

RE2_MAX_MEM = 8 << 20  # per pattern: its program and its DFA cache (RE2's own default)


class UnboundedPattern(ValueError):
    """Matching this pattern could take time exponential (or worse than linear) in a key's length."""


def _options() -> Any:
    import re2  # only for patterns Python's re is not linear on: most files never need it (start-up time)

    options = re2.Options()
    options.log_errors = False  # the reason comes back in the exception; RE2 would also print it
    options.max_mem = RE2_MAX_MEM
    return options


def _re2(text: str) -> Any:
    import re2

    try:
        return re2.compile(text, _options())
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise NoLinearForm(f"a pattern RE2 cannot compile ({reason})") from None


class KeyPattern:
    """A compiled rules pattern with the parts of ``re.Pattern``'s interface the engine uses.

    ``regex`` is Python's compiled pattern (for reading its syntax); ``engine`` is ``"re2"`` or
    ``"re"``. Raises ``re.error`` for bad syntax and :class:`UnboundedPattern` for a pattern
    neither engine can match in bounded time.
    """

    __slots__ = ("regex", "pattern", "flags", "groups", "groupindex", "engine", "_ascii", "_unicode", "_full")

    def __init__(self, text: str):
        self.regex = compile_pattern(text)  # re.compile, keeping the syntax tree read below
        self.pattern, self.flags = self.regex.pattern, self.regex.flags
        self.groups, self.groupindex = self.regex.groups, self.regex.groupindex
        self._unicode: Any = None
        if linear_in_re(self.regex):  # most key patterns: Python's re is linear on them, and cheaper
            self._ascii = self._full = None
            self.engine = "re"
            return
        try:
            self._ascii = _re2(to_re2(self.regex, ascii_text=True))
            self._full = _ascii_spans(self._ascii, "fullmatch")
            self.engine = "re2"
        except NoLinearForm as exc:
            risk = backtracking_risk(self.regex)
            if risk is not None:
                raise UnboundedPattern(
                    f"it uses {exc}, which only Python's backtracking engine matches, and {risk}: matching could "
                    "take hours on a long key. Simplify it (skip patterns and rule order can often replace "
                    "lookarounds), or split it into several rules") from None
            self._ascii = self._full = None
            self.engine = "re"

    def __repr__(self) -> str:
        return f"KeyPattern({self.pattern!r}, engine={self.engine!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def _unicode_program(self) -> Any:
        if self._unicode is None:  # built on the first key that is not ASCII: its classes cost a scan
            self._unicode = _re2(to_re2(self.regex, ascii_text=False))
        return self._unicode

    def _spans(self, key: str, anchor: str) -> list | None:
        if key.isascii():  # nearly every key: byte offsets are character offsets
            return _ascii_spans(self._ascii, anchor)(key.encode("ascii"))
        m = getattr(self._unicode_program(), anchor)(key)
        return None if m is None else [m.span(i) for i in range(self.groups + 1)]

    def fullmatch(self, key: str) -> "KeyMatch | re.Match | None":
        if self._full is None:
            return self.regex.fullmatch(key)
        spans = self._full(key.encode("ascii")) if key.isascii() else self._spans(key, "fullmatch")
        return None if spans is None else KeyMatch(self, key, spans)

    def match(self, key: str) -> "KeyMatch | re.Match | None":
        """A match at the start of ``key`` (not necessarily to its end), as ``re.Pattern.match``."""
        if self._ascii is None:
            return self.regex.match(key)
        spans = self._spans(key, "match")
        return None if spans is None else KeyMatch(self, key, spans)

    def finditer(self, key: str) -> Iterator["KeyMatch | re.Match"]:
        if self._ascii is None:
            yield from self.regex.finditer(key)
            return
        program = self._ascii if key.isascii() else self._unicode_program()
        for m in program.finditer(key):
            yield KeyMatch(self, key, [m.span(i) for i in range(self.groups + 1)])


@functools.lru_cache(maxsize=None)
def _anchor(anchor: str) -> Any:
    """google-re2's private anchor value for ``anchor`` ("fullmatch" or "match"), or None."""
    import re2

    return getattr(getattr(re2, "_Anchor", None), {"fullmatch": "ANCHOR_BOTH", "match": "ANCHOR_START"}[anchor], None)


def _ascii_spans(program: Any, anchor: str) -> Callable[[bytes], list | None]:
    """A function: ASCII ``data`` → the group spans of ``program``'s match, or None.

    The hot path of planning. google-re2's public ``fullmatch`` wraps each call in a generator
    and a match object (about 10x the cost of Python's ``re``); its compiled object's ``Match``
    returns the spans alone. That is a private detail, so it is used only where present, with
    the public call as the fallback (tests/rules/test_key_pattern.py runs both).
    """
    raw, how = getattr(program, "_regexp", None), _anchor(anchor)
    if raw is not None and how is not None:
        spans_of = raw.Match

        def spans(data: bytes) -> list | None:
            found = spans_of(how, data, 0, len(data))
            return None if found[0][0] < 0 else found
        return spans
    method = getattr(program, anchor)

    def public(data: bytes) -> list | None:
        m = method(data)
        return None if m is None else [m.span(i) for i in range(len(m.groups()) + 1)]
    return public


def full_matcher(pattern: "KeyPattern | re.Pattern") -> Callable[[str], Any]:
    """``pattern.fullmatch``, or for a :class:`KeyPattern` that Python's ``re`` matches, its compiled
    pattern's own (one Python call less per key; the planner calls it for every key)."""
    if isinstance(pattern, KeyPattern) and pattern._full is None and pattern.engine == "re":
        return pattern.regex.fullmatch
    return pattern.fullmatch


@functools.lru_cache(maxsize=4096)
def key_pattern(text: str) -> KeyPattern:
    """``KeyPattern(text)``, compiled once: checking a file and building its rules share the work."""
    return KeyPattern(text)


class KeyMatch:
    """A match made by RE2, with the ``re.Match`` methods the engine uses; group names resolve
    through the Python pattern."""

    __slots__ = ("re", "string", "_spans")

    def __init__(self, pattern: KeyPattern, key: str, spans: list):
        self.re, self.string, self._spans = pattern, key, spans

    def __repr__(self) -> str:
        return f"<KeyMatch span={self.span()}, match={self.group()!r}>"

    def _index(self, ref: int | str) -> int:
        if isinstance(ref, int):
            if 0 <= ref <= self.re.groups:
                return ref
        elif ref in self.re.groupindex:
            return self.re.groupindex[ref]
        raise IndexError("no such group")

    def _text(self, index: int, default: Any = None) -> Any:
        start, end = self._spans[index]
        return default if start < 0 else self.string[start:end]

    def group(self, *refs: int | str) -> Any:
        if len(refs) <= 1:
            return self._text(self._index(refs[0]) if refs else 0)
        return tuple(self._text(self._index(r)) for r in refs)

    def __getitem__(self, ref: int | str) -> str | None:
        return self._text(self._index(ref))

    def groups(self, default: Any = None) -> tuple:
        return tuple(self._text(i, default) for i in range(1, self.re.groups + 1))

    def groupdict(self, default: Any = None) -> dict[str, Any]:
        return {name: self._text(i, default) for name, i in self.re.groupindex.items()}

    def start(self, ref: int | str = 0) -> int:
        return self._spans[self._index(ref)][0]

    def end(self, ref: int | str = 0) -> int:
        return self._spans[self._index(ref)][1]

    def span(self, ref: int | str = 0) -> tuple[int, int]:
        return tuple(self._spans[self._index(ref)])  # type: ignore[return-value]
