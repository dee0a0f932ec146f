"""One grammar for every command: SRC (and DST) positional, --rules R, --format F, the same shared options."""
import re

import pytest

# `mapper COMMAND --help`'s usage line, without "[-h]" (argparse lists positionals last).
READER = "[--trust-pickle] [--unwrap PATH] [--strip-prefix PREFIX]"
WRITE = "[--force] [--verify] [--max-shard-size SIZE] [--no-source-hash] [-q]"
TARGET = "[--target T] [--model-arg K=V] [--unmatched {error,keep,drop}]"
GRAMMAR = {
    "validate": "[--json] RULES",
    "plan": f"--rules R {TARGET} [--format F] [--target-format F] {READER} [--strict] [--json] SRC",
    "explain": f"--rules R {TARGET} [--format F] [--target-format F] {READER} [--json] SRC KEY",
    "inspect": f"[--format F] {READER} [--json] SRC",
    "convert": f"[--rules R] {TARGET} [--format F] [--target-format F] {READER} [--strict] {WRITE} [--json] SRC DST",
    "export": f"--rules R [--source-specs FILE] [--format F] {READER} {WRITE} [--json] SRC DST",
    "plugins": "[--json]",
    "rules": "[--json]",
}


def usage(mapper, *args: str) -> str:
    r = mapper(*args, "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split("\n\n", 1)[0].split())
    return re.sub(r"^usage: ", "", text).replace(" [-h]", "")


def test_every_command_is_in_the_grammar():
    from mapper_core.cli import COMMANDS

    assert sorted(COMMANDS) == sorted(GRAMMAR)


@pytest.mark.parametrize("command", sorted(GRAMMAR))
def test_usage_follows_the_grammar(mapper, command):
    assert usage(mapper, command) == f"mapper {command} {GRAMMAR[command]}"


def test_global_options(mapper):
    assert usage(mapper) == "mapper [--plugin MODULE] [--debug] [--version] COMMAND ..."
    version = mapper("--version")
    assert version.returncode == 0 and version.stdout.startswith("mapper-core ")
