"""Read rules text into a :class:`~.positions.Parsed` value with the parser for its format."""
from __future__ import annotations

from ..errors import Problem, RulesError
from .json_text import JsonParser
from .positions import MAX_BYTES, Collector, Fatal, Parsed, json_path


def parse(text: str, filename: str, fmt: str) -> Parsed:
    """Parse ``text`` as ``fmt`` ("yaml" or "json"); raise RulesError when it cannot be read at all."""
    if len(text) > MAX_BYTES:
        raise RulesError([Problem(filename, None, "$", f"the rules text is {len(text):,} characters; "
                                  f"the limit is {MAX_BYTES:,}. Check that this is really a rules file")])
    text = text.lstrip("\ufeff")
    if fmt == "yaml":
        from .safe_yaml import YamlParser  # PyYAML is imported only for YAML files

        parser: Collector = YamlParser(text, filename)
    else:
        parser = JsonParser(text, filename)
    try:
        data = parser.run()
    except Fatal as exc:
        fatal = Problem(filename, exc.line, json_path(exc.path), exc.message)
        raise RulesError([*parser.problems, fatal]) from None
    return Parsed(data, parser.lines, parser.key_lines, tuple(parser.problems), frozenset(parser.bad))
