"""Safe, metered YAML for rules files: compose only, check every tag, count alias expansion.

PyYAML *composes* the text into a node graph (no constructor runs, so no tag can build an
object); :class:`YamlParser` then turns nodes into plain data itself, refusing any tag
outside plain data and stopping alias bombs and runaway nesting with a Problem.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Any

import yaml

from .quote_hints import syntax_hint
from .positions import (MAX_ALIASES, MAX_DEPTH, MAX_EXPANDED_CHARS, MAX_EXPANDED_NODES, Budget, Collector, Fatal,
                        Path, int_digits_problem, too_deep)

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
# YAML 1.2 floats that PyYAML's YAML 1.1 rules read as text: an exponent without a dot or
# without a sign (`1e-3`, `1E5`, `2.5e3`) and a signed leading dot (`-.5`). People write
# learning rates like this; reading them as strings would only produce a confusing type error.
# Digits only (no 1.1 underscores), and never a bare integer, so `089` stays the text it was.
YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$|^[-+]?\.[0-9]+$")
YAML12_FLOAT_FIRST = list("-+0123456789.")
_DOUBLE_QUOTE_HINT = (
    "; inside double quotes YAML reads backslashes as escapes, so write regular expressions "
    "in single quotes: 'conv\\.(\\d+)'"
)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


class YamlParser(Collector):
    """YAML text → plain data with lines; see the module docstring for the safety rules."""

    def __init__(self, text: str, filename: str):
        super().__init__(filename)
        self.text = text
        self.expanded = 0
        self.expanded_chars = 0  # text reached through aliases
        self.seen: set[int] = set()  # ids of nodes converted once; a second visit is an alias use
        self.active: set[int] = set()  # ids of collections being converted; a revisit is a cycle

    def run(self) -> Any:
        loader = None
        try:
            loader = _make_loader()(self.text)  # the reader checks characters here already
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = exc.problem or "invalid YAML"
            if exc.context:
                what = f"{exc.context}, {what}"
            hint = _DOUBLE_QUOTE_HINT if "escape character" in what else ""
            line = mark.line + 1 if mark else None
            if mark is not None and self.text[mark.index:mark.index + 1] == "\t":
                hint = "; the line is indented with a tab: YAML indents with spaces only, replace the tab with spaces"
            elif mark is not None:  # an unquoted value YAML read as a mapping, an alias, ...: on this line or before
                near = [m.line + 1 for m in (exc.problem_mark, exc.context_mark) if m is not None] + [mark.line]
                quote = syntax_hint(self.text, near)
                if quote:
                    line, hint = quote
            raise Fatal(line, f"YAML syntax error: {what}{hint}") from None
        except yaml.reader.ReaderError as exc:
            line = self.text.count("\n", 0, exc.position) + 1
            char = chr(exc.character) if isinstance(exc.character, int) else exc.character
            raise Fatal(line, f"the file holds a character YAML does not allow (U+{ord(char):04X}); "
                               "remove it or save the file as plain UTF-8 text") from None
        except Fatal:
            raise
        finally:
            if loader is not None:
                loader.dispose()
        if node is None:
            return None
        self.loader = loader
        return self.convert(node, (), False, 0)

    def convert(self, node: Any, path: Path, in_alias: bool, depth: int) -> Any:
        line = node.start_mark.line + 1
        nid = id(node)
        if nid in self.active:
            raise Fatal(line, "an alias refers to the collection that contains it (a cycle); "
                               "rules files must be trees: write the value out", path)
        if nid in self.seen:
            in_alias = True
        self.seen.add(nid)
        if in_alias:
            self.expanded += 1
            if self.expanded > MAX_EXPANDED_NODES:
                raise Fatal(line, f"aliases expand to more than {MAX_EXPANDED_NODES:,} values "
                                   "(an alias bomb?); refused. Write the values out or use fewer aliases", path)
            if isinstance(node, yaml.ScalarNode):
                self.expanded_chars += len(node.value)
                if self.expanded_chars > MAX_EXPANDED_CHARS:
                    raise Fatal(line, f"aliases expand to more than {MAX_EXPANDED_CHARS:,} characters of text "
                                       "(an alias bomb?); refused. Write the values out or use fewer aliases", path)
        if depth > MAX_DEPTH:
            raise too_deep(line, path)
        self.lines.setdefault(path, line)
        tag = node.tag
        if isinstance(node, yaml.ScalarNode):
            if tag not in _SCALAR_TAGS:
                return self.refuse_tag(line, path, tag)
            return self.scalar(node, line, path)
        if isinstance(node, yaml.SequenceNode):
            if tag != _YAML + "seq":
                return self.refuse_tag(line, path, tag)
            self.active.add(nid)
            items = [self.convert(child, (*path, i), in_alias, depth + 1) for i, child in enumerate(node.value)]
            self.active.discard(nid)
            return items
        if tag != _YAML + "map":
            return self.refuse_tag(line, path, tag)
        self.active.add(nid)
        result = self.mapping(node, path, in_alias, depth)
        self.active.discard(nid)
        return result

    def mapping(self, node: Any, path: Path, in_alias: bool, depth: int) -> dict:
        result: dict[str, Any] = {}
        merges = []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _YAML + "merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                self.problem(key_line, path, "mapping keys must be plain text (no lists, mappings or tags as keys); "
                                             "rewrite this key as a simple name")
                continue
            key = key_node.value  # the text as written: `0:` in a table means the string "0"
            if key in result:
                first = self.key_lines.get((*path, key))
                self.problem(key_line, (*path, key), f"duplicate key '{key}' (first at line {first}); "
                                                     "keep only one of them")
                continue
            self.key_lines[(*path, key)] = key_line
            result[key] = self.convert(value_node, (*path, key), in_alias, depth + 1)
        # Explicit keys were converted first, so their lines win over merged ones (setdefault above).
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self.problem(source.start_mark.line + 1, path,
                                 "a YAML merge key ('<<') needs a mapping or a list of mappings")
                    continue
                merged = self.convert(source, path, in_alias, depth)
                if isinstance(merged, dict):
                    for key, value in merged.items():
                        result.setdefault(key, value)
        return result

    def scalar(self, node: Any, line: int, path: Path) -> Any:
        tag = node.tag[len(_YAML):]
        if tag in ("str", "timestamp"):  # a date stays the text it was written as
            return node.value
        if tag == "null":
            return None
        too_long = tag == "int" and int_digits_problem(node.value)
        if too_long:
            self.problem(line, path, too_long, bad=True)
            return None
        try:
            if tag == "bool":
                return self.loader.construct_yaml_bool(node)
            value = self.loader.construct_yaml_int(node) if tag == "int" else self.loader.construct_yaml_float(node)
        except (ValueError, KeyError):
            self.problem(line, path, f"'{node.value}' is not a valid !!{tag}; fix the value or drop the tag", bad=True)
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(line, path, f"'{node.value}' is not a finite number; write a plain number", bad=True)
            return None
        return value

    def refuse_tag(self, line: int, path: Path, tag: str) -> None:
        self.problem(line, path, f"YAML tag '{_short_tag(tag)}' is not allowed: rules files hold plain data "
                                 "(text, numbers, true/false, null, lists, mappings) and never build objects; "
                                 "remove the tag", bad=True)
        return None


@functools.lru_cache(maxsize=None)
def _make_loader() -> type:
    """A safe loader that only composes, counting aliases and nesting on the way.

    Events come from libyaml when PyYAML has it (fast), else from the pure-Python parser;
    composition is always PyYAML's Python Composer so that the counting below applies.
    """
    if getattr(yaml, "__with_libyaml__", False):
        parser_bases: tuple = (yaml.cyaml.CParser,)

        def init_parser(self: Any, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
    else:
        parser_bases = (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)

        def init_parser(self: Any, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)

    # Composer comes first so its get_single_node/compose_node win over CParser's C versions.
    bases = (yaml.composer.Composer, *parser_bases, yaml.constructor.SafeConstructor, yaml.resolver.Resolver)

    class _Loader(*bases):  # type: ignore[misc]
        def __init__(self, stream: str):
            init_parser(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)  # only its scalar helpers are used
            yaml.resolver.Resolver.__init__(self)
            self.alias_uses = 0
            self.depth = 0
            self.budget = Budget()
            self.top_key: str | None = None  # the top-level key whose value is being composed

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.alias_uses += 1
                if self.alias_uses > MAX_ALIASES:
                    line = self.peek_event().start_mark.line + 1
                    raise Fatal(line, f"more than {MAX_ALIASES:,} alias uses (*name); refused as a "
                                       "possible alias bomb. Write the values out")
            self.depth += 1
            try:
                line = self.peek_event().start_mark.line + 1
                if self.depth > MAX_DEPTH:
                    raise too_deep(line, ())
                if self.depth == 2 and isinstance(index, yaml.ScalarNode):
                    self.top_key = index.value  # composing the value of a top-level key
                entry = self.depth == 3 and isinstance(parent, yaml.SequenceNode)
                self.budget.value(line, self.top_key if entry else None)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    # On this class only: add_implicit_resolver copies the inherited table before changing it,
    # so yaml.SafeLoader and every other loader keep YAML 1.1 behaviour.
    _Loader.add_implicit_resolver(_YAML + "float", YAML12_FLOAT, YAML12_FLOAT_FIRST)
    return _Loader
