"""main() builds the parser of the one command a line names (start-up time); it must parse,
help and refuse exactly as the parser of every command does."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from mapper_core.cli import COMMANDS, build_parser, command_of

ROOT = Path(__file__).resolve().parents[2]


def _documented_lines() -> list[list[str]]:
    """Every `$ mapper ...` line of the README and docs, as argv."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in page.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^\$ (?:[A-Z_]+=\S+ )*mapper (.*?)(?:\s+#.*)?$", line)
            if m:
                found.append(shlex.split(m.group(1)))
    return found


LINES = _documented_lines() + [[name, "--help"] for name in COMMANDS] + [[name] for name in COMMANDS] + [
    ["--debug", "plan", "a.safetensors", "--rules", "r.yaml"], ["--plugin", "plan", "plan", "--help"],
    ["--plugin=x", "--debug", "inspect", "m.safetensors", "--json"], ["plan", "--rules"], ["plann"], [],
    ["--help"], ["--version"], ["-h", "plan"], ["--plug", "x", "plan", "s", "--rules", "r"], ["--plugin"],
]


def outcome(parser, argv):
    """What parse_args makes of argv: the namespace, or the exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return vars(parser.parse_args(argv)), "", ""
        except SystemExit as exc:
            return exc.code, out.getvalue(), err.getvalue()


def test_the_corpus_has_the_documented_lines():
    assert len(LINES) > 40 and {line[0] for line in _documented_lines() if line} >= {"plan", "convert", "validate"}


@pytest.mark.parametrize("argv", LINES, ids=[" ".join(a)[:60] for a in LINES])
def test_same_as_the_parser_of_every_command(argv):
    assert outcome(build_parser(command_of(argv)), argv) == outcome(build_parser(), argv)


def test_which_lines_get_a_parser_for_one_command():
    assert command_of(["plan", "x"]) == "plan"
    assert command_of(["--debug", "--plugin", "convert", "inspect"]) == "inspect"
    assert command_of(["--plugin=a", "verify"]) == "verify"
    for unclear in ([], ["--help"], ["-h", "plan"], ["--plug", "x", "plan"], ["plann"], ["--plugin"], ["--deb", "plan"]):
        assert command_of(unclear) is None
