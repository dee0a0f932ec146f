"""Load a rules file (YAML or JSON) into a :class:`~mapper_core.rules.ruleset.RuleSet`.

Three passes, and every problem from all of them is reported together as one RulesError:
a position-keeping parse (:mod:`.parse`), the JSON Schema (:mod:`.schema`), then the
checks a schema cannot express: every pattern compiles, every target template parses and
names only groups and tables its rule has, and at most one parameter group is the default.
"""
from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path
from typing import Any, Mapping

from . import schema
from ..errors import Problem, RulesError
from ..file_magic import kind_of_head
from .parse import parse
from .quote_hints import doubled_backslash_warnings, glob_hint, with_quote_hints
from .positions import MAX_BYTES, MAX_PATTERN_CHARS, MAX_PATTERNS, Parsed, json_path
from .key_pattern import KeyPattern, UnboundedPattern, key_pattern
from .ruleset import FreezeGroup, ParamGroup, Rule, RuleSet, SkipPattern
from .schedule import check_schedule, schedule_steps
from .template import Template, TemplateError
from .template_hints import regex_syntax, sub_style_reference
from .transforms import BUILTIN, ambiguous, known as known_transforms, make_step

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
SUPPORTED_VERSION = 1
_SURROGATE = re.compile("[\ud800-\udfff]")
SHOWN_PATTERN = 80  # characters of a pattern quoted in a message


def _shown(pattern: str) -> str:
    return pattern if len(pattern) <= SHOWN_PATTERN else pattern[:SHOWN_PATTERN - 3] + "..."


def load_rules(path: str | Path, *, transforms: Mapping[str, Any] | None = None) -> RuleSet:
    """Read and check a rules file; ``.yaml``/``.yml`` is YAML, ``.json`` JSON, else guessed from the text.

    ``transforms``: plugin transforms (name → TransformSpec or its Contribution) that
    ``transform:`` steps may name besides the built-in ones.

    Raises RulesError listing every problem found (``file:line: $.json.path: message``).
    """
    name = str(path)
    try:
        info = Path(path).stat()
        kind = _not_regular(info.st_mode)
        if kind:  # a FIFO would block the read forever, a device could stream without end
            raise RulesError([Problem(name, None, "$", f"is {kind}, not a regular file; a rules file must be "
                                                       "a file on disk (save the rules to a .yaml or .json file)")])
        size = info.st_size
        with open(path, "rb") as fh:
            kind = _checkpoint_kind(fh.read(256), size)  # a zip's first member name is within it
            if kind:
                raise RulesError([Problem(name, None, "$", f"this is {kind}, not a rules file; rules are YAML or JSON "
                                                           "text. A checkpoint is given as the source (mapper plan "
                                                           "CHECKPOINT --rules RULES.yaml)")])
            if size > MAX_BYTES:
                raise RulesError([_too_big(name, size)])
            fh.seek(0)
            raw = fh.read(MAX_BYTES + 1)  # the file may have grown since stat()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RulesError([Problem(name, None, "$", f"cannot read the rules file: {reason}; "
                                                   "check the path and its permissions")]) from None
    if len(raw) > MAX_BYTES:
        raise RulesError([_too_big(name, len(raw))])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RulesError([Problem(name, line, "$", f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                                                   "cannot be decoded); save it as UTF-8")]) from None
    return _build(text, name, _format(name, text, None), hashlib.sha256(raw).hexdigest(), transforms)


def parse_rules(text: str, filename: str, fmt: str | None = None, *,
                transforms: Mapping[str, Any] | None = None) -> RuleSet:
    """Check rules given as text; ``fmt`` is "yaml" or "json" (default: from ``filename``, else the text).

    ``filename`` only labels problems and becomes ``RuleSet.origin``.
    """
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _build(text, filename, _format(filename, text, fmt), digest, transforms)


def _not_regular(mode: int) -> str | None:
    """What kind of non-regular file ``mode`` describes, or None for a regular file."""
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def _checkpoint_kind(head: bytes, size: int) -> str | None:
    """What checkpoint format a file starting with ``head`` (of ``size`` bytes) is, or None: magic
    bytes no YAML or JSON text starts with, and the safetensors layout (a length, then ``{``)."""
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "a safetensors checkpoint"
    return kind_of_head(head)


def _too_big(name: str, size: int) -> Problem:
    return Problem(name, None, "$", f"the file is {size:,} bytes; rules files are limited to {MAX_BYTES:,} bytes. "
                                    "Check that this is really a rules file")


def _format(filename: str, text: str, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        fmt = "yaml" if fmt == "yml" else fmt
        if fmt not in ("yaml", "json"):
            raise ValueError(f"unknown rules format {fmt!r}; use 'yaml' or 'json'")
        return fmt
    by_suffix = FORMATS.get(Path(filename).suffix.lower())
    if by_suffix:
        return by_suffix
    return "json" if text.lstrip("\ufeff \t\r\n").startswith("{") else "yaml"


def _build(text: str, filename: str, fmt: str, digest: str, transforms: Mapping[str, Any] | None = None) -> RuleSet:
    parsed = parse(text, filename, fmt)
    data = parsed.data
    if not isinstance(data, dict):
        what = "is empty" if data is None else "holds a list" if isinstance(data, list) else "holds a single value"
        raise _error([*parsed.problems, Problem(filename, parsed.line(()), "$", (
            f"the file {what}; a rules file is a mapping with at least `version: 1` and a `rules:` list"))])
    _check_version(data, parsed, filename)
    _check_count(data, parsed, filename)
    checker = _Checker(filename, parsed, transforms)
    version_reported = isinstance(data.get("version"), float)
    if version_reported:
        # JSON Schema counts 1.0 as the integer 1, so the schema lets it through; refuse it here.
        checker.add(("version",), f"version must be the integer 1, got the decimal number {data['version']}; "
                                  "this mapper-core reads rules version 1: write `version: 1`")
    for issue in schema.validate(data):
        if issue.path == ("version",):
            if version_reported:
                continue  # `type` and `const` both fail for e.g. '1': one message is enough
            version_reported = True
        checker.add_schema_issue(issue)
    checker.check_semantics(data)
    if checker.problems:
        raise _error(with_quote_hints(checker.problems, text) if fmt == "yaml" else checker.problems)
    warnings = doubled_backslash_warnings(checker.doubled, data, parsed, text, fmt, filename)
    return _to_ruleset(data, checker, filename, digest, warnings)


def _error(problems: list[Problem]) -> RulesError:
    """All problems in file order (a stable sort keeps same-line problems in the order found)."""
    return RulesError(sorted(problems, key=lambda p: p.line if p.line is not None else 0))


def _check_version(data: dict, parsed: Parsed, filename: str) -> None:
    """A newer version may mean keys we cannot read; say so instead of listing them as unknown."""
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version != SUPPORTED_VERSION:
        raise _error([*parsed.problems, Problem(filename, parsed.line(("version",)), "$.version", (
            f"this file is rules version {version}, but this mapper-core reads rules version "
            f"{SUPPORTED_VERSION}; upgrade mapper-core, or rewrite the file for version 1 and set `version: 1`"))])


def _count_patterns(data: dict) -> int:
    """How many regular expressions the file holds (each one is compiled and tried on keys)."""
    def items(value: Any) -> int:
        return len(value) if isinstance(value, list) else 0

    count = items(data.get("rules")) + items(data.get("skip")) + items(data.get("new"))
    for section, inner in (("freeze", None), ("param_groups", "match")):
        groups = data.get(section)
        if isinstance(groups, dict):
            count += sum(items(g if inner is None else g.get(inner) if isinstance(g, dict) else None)
                         for g in groups.values())
    return count


def _check_count(data: dict, parsed: Parsed, filename: str) -> None:
    """Refuse a file with more patterns than any model needs, before checking each one (seconds apiece)."""
    count = _count_patterns(data)
    if count > MAX_PATTERNS:
        raise _error([*parsed.problems, Problem(filename, parsed.line(("rules",)), "$.rules", (
            f"the file holds {count:,} patterns (rules, skip, new, freeze and param_groups together); the limit is "
            f"{MAX_PATTERNS:,}. Use capture groups so that one rule covers many keys"))])


class _Checker:
    """Collects problems; skips a semantic check where the schema or the parse already complained."""

    def __init__(self, filename: str, parsed: Parsed, transforms: Mapping[str, Any] | None = None):
        self.filename = filename
        self.plugin_transforms = transforms  # resolved only when a step names a non-built-in transform
        self.parsed = parsed
        self.problems: list[Problem] = list(parsed.problems)
        self.reported: set[tuple] = set()  # every prefix of every schema issue's path
        # Values built right after their patterns compiled, while re's own cache still holds
        # them: a thousand rules would otherwise be compiled twice.
        self.rules: dict[int, Rule] = {}
        self.skip: dict[int, SkipPattern] = {}
        self.new: dict[int, SkipPattern] = {}
        self.doubled: list[tuple] = []  # patterns holding a literal backslash, for a warning

    def add(self, path: tuple, message: str, *, at_key: bool = False) -> None:
        self.problems.append(Problem(self.filename, self.parsed.line(path, key=at_key), json_path(path), message))

    def add_schema_issue(self, issue: schema.SchemaIssue) -> None:
        if self.parsed.is_bad(issue.path):
            return  # the parse already reported this value (e.g. a refused tag)
        self.reported.update(issue.path[:n] for n in range(len(issue.path) + 1))
        self.add(issue.path, issue.message, at_key=issue.at_key)

    def usable(self, path: tuple, value: Any, kind: type) -> bool:
        """True when ``value`` has the right type and nothing at or below ``path`` was reported."""
        return isinstance(value, kind) and path not in self.reported and not self.parsed.is_bad(path)

    def compile(self, path: tuple, pattern: Any) -> KeyPattern | None:
        if not self.usable(path, pattern, str):
            return None
        if len(pattern) > MAX_PATTERN_CHARS:
            self.add(path, f"the pattern is {len(pattern):,} characters long; patterns are limited to "
                           f"{MAX_PATTERN_CHARS:,} characters. Match the key's structure (e.g. '(.+)') instead "
                           "of spelling it out")
            return None
        surrogate = _SURROGATE.search(pattern)
        if surrogate:
            self.add(path, f"the pattern holds a lone surrogate (U+{ord(surrogate.group()):04X}, e.g. from an escape "
                           "like \\ud800), which is not a character and cannot be in a key; remove it")
            return None
        if "\\\\" in pattern:
            self.doubled.append(path)
        try:
            return key_pattern(pattern)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            self.add(path, f"invalid regular expression '{_shown(pattern)}': {exc.msg}{where}; fix the pattern "
                           f"(Python `re` syntax, matched against the whole key){glob_hint(pattern, exc.msg)}")
        except UnboundedPattern as exc:
            self.add(path, f"pattern '{_shown(pattern)}' refused: {exc}")
        except (RecursionError, OverflowError, MemoryError) as exc:
            self.add(path, f"pattern '{_shown(pattern)}' refused: too deeply nested or too large to compile "
                           f"({type(exc).__name__}); simplify it")
        return None

    def check_semantics(self, data: dict) -> None:
        rules = data.get("rules")
        if isinstance(rules, list):
            for i, rule in enumerate(rules):
                if isinstance(rule, dict):
                    self.check_rule(i, rule)
        skip = data.get("skip")
        if isinstance(skip, list):
            for i, pattern in enumerate(skip):
                if self.compile(("skip", i), pattern) is not None:
                    self.skip[i] = SkipPattern(pattern, line=self.parsed.line(("skip", i)))
        new = data.get("new")
        if isinstance(new, list):
            for i, pattern in enumerate(new):
                if self.compile(("new", i), pattern) is not None:
                    self.new[i] = SkipPattern(pattern, line=self.parsed.line(("new", i)))
        freeze = data.get("freeze")
        if isinstance(freeze, dict):
            for name, patterns in freeze.items():
                if isinstance(patterns, list):
                    for i, pattern in enumerate(patterns):
                        self.compile(("freeze", name, i), pattern)
        groups = data.get("param_groups")
        if isinstance(groups, dict):
            self.check_param_groups(groups)
        check_schedule(data, self.add, self.usable)

    def check_rule(self, i: int, rule: dict) -> None:
        path = ("rules", i)
        pattern = self.compile((*path, "match"), rule.get("match"))
        steps = self.check_transform(path, rule.get("transform", []))
        target_path = (*path, "target")
        if not self.usable(target_path, rule.get("target"), str):
            return
        try:
            template = Template.parse(rule["target"])
        except TemplateError as exc:
            self.add(target_path, f"invalid target template: {exc}")
            return
        copied = sub_style_reference(rule["target"]) or regex_syntax(rule["target"])
        if copied:
            self.add(target_path, copied)
            return
        if pattern is None:
            return  # group names cannot be checked against a pattern that does not compile
        tables_ok = self.usable((*path, "tables"), rule.get("tables", {}), dict)
        tables = rule.get("tables", {}) if tables_ok else {}
        for message in template.check(pattern, tables):
            is_table = "table '" in message
            if is_table and not tables_ok:
                continue  # the schema already complained about `tables`
            fix = ("define it under this rule's `tables:`" if is_table
                   else "change the template or add the group to `match`")
            self.add(target_path, f"{message}; {fix}")
        self.rules[i] = Rule(
            index=i, match=rule["match"], target=rule["target"],
            on_shape_mismatch=rule.get("on_shape_mismatch", "error"),
            on_kind_mismatch=rule.get("on_kind_mismatch", "error"),
            tables={name: dict(table) for name, table in tables.items()},
            line=self.parsed.line(path),
            transform=steps,
        )

    def check_transform(self, path: tuple, steps: Any) -> tuple:
        """Resolve each step of a rule's ``transform:`` list; unknown names and bad parameters are problems."""
        path = (*path, "transform")
        if not isinstance(steps, list) or self.parsed.is_bad(path):
            return ()  # the schema reports a non-list; each step below is checked on its own
        resolved = []
        for k, step in enumerate(steps):
            where = (*path, k)
            if not self.usable(where, step, dict) or len(step) != 1:
                continue
            (name, params), = step.items()
            # Plugin transforms are looked up (which may start plugins) only for a non-built-in name.
            table = BUILTIN if name in BUILTIN else known_transforms(self.plugin_transforms)
            if name not in table and ambiguous(name, table):
                self.add((*where, name), f"rule {path[1]}: transform step '{name}' is ambiguous: several plugins "
                                         f"contribute it ({', '.join(ambiguous(name, table))}); write one of these "
                                         "qualified names", at_key=True)
                continue
            if name not in table:
                shown = sorted(k for k in table if not k.startswith("mapper_core:"))  # built-ins once, bare
                import difflib  # only for this message

                close = difflib.get_close_matches(str(name), shown, n=1)
                guess = f" (did you mean '{close[0]}'?)" if close else ""
                self.add((*where, name), f"rule {path[1]}: unknown transform step '{name}'{guess}; known steps: "
                                         f"{', '.join(shown)}. Check the spelling, or load the plugin "
                                         "that contributes it (--plugin MODULE or $MAPPER_PLUGINS)", at_key=True)
                continue
            if params is not None and not isinstance(params, dict):
                self.add((*where, name), f"rule {path[1]} step {k + 1}: the parameters of '{name}' must be a "
                                         f"mapping, e.g. {{{name}: {{param: value}}}}")
                continue
            params = params or {}
            for message in (table[name].check(params) if table[name].check else []):
                self.add((*where, name), f"rule {path[1]} step {k + 1}: {message}")
            if table[name].params_schema is not None:
                for issue in schema.validate_params(table[name].params_schema, params, table[name].plugin, name):
                    self.add((*where, name, *issue.path), f"rule {path[1]} step {k + 1} ({name}): {issue.message}",
                             at_key=issue.at_key)
            resolved.append(make_step(name, params, transforms=table, line=self.parsed.line(where)))
        return tuple(resolved)

    def check_param_groups(self, groups: dict) -> None:
        defaults = []
        for name, group in groups.items():
            if not isinstance(group, dict):
                continue
            patterns = group.get("match")
            if isinstance(patterns, list):
                for i, pattern in enumerate(patterns):
                    self.compile(("param_groups", name, "match", i), pattern)
            if group.get("default") is True:
                defaults.append(name)
        for name in defaults[1:]:
            self.add(("param_groups", name, "default"), (
                f"more than one parameter group has `default: true` ({', '.join(defaults)}); "
                "keep it on one group and give the others `match:` patterns"))


def _to_ruleset(data: dict, checker: _Checker, filename: str, digest: str, warnings: tuple) -> RuleSet:
    """The checked data as a RuleSet (called only when no problem was found)."""
    rules = tuple(checker.rules[i] for i in range(len(data["rules"])))
    skip = tuple(checker.skip[i] for i in range(len(data.get("skip", ()))))
    freeze = tuple(FreezeGroup(name, tuple(patterns)) for name, patterns in data.get("freeze", {}).items())
    groups = tuple(
        ParamGroup(
            name,
            match=tuple(group.get("match", ())),
            default=bool(group.get("default", False)),
            # Everything else is an optimizer option; lists (betas) become tuples as optimizers expect.
            options={k: tuple(v) if isinstance(v, list) else v
                     for k, v in group.items() if k not in ("match", "default")},
        )
        for name, group in data.get("param_groups", {}).items()
    )
    return RuleSet(
        name=data.get("name") or Path(filename).stem,
        rules=rules,
        skip=skip,
        freeze=freeze,
        param_groups=groups,
        schedule=schedule_steps(data, checker.parsed.line),
        unmatched=data.get("unmatched", "error"),
        new=tuple(checker.new[i] for i in range(len(data.get("new", ())))),
        description=data.get("description", ""),
        version=int(data["version"]),
        origin=filename,
        sha256=digest,
        warnings=warnings,
    )
