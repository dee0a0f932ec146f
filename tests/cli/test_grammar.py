"""One grammar for every command: SRC (and DST) positional, --rules R, --format F, the same shared options."""
import re

import pytest

# `mapper COMMAND --help`'s usage line, without "[-h]" (argparse lists positionals last).
READER = "[--trust-pickle] [--allow-expansion] [--unwrap PATH] [--strip-prefix PREFIX] [--allow-outside-shards]"
WRITE = "[--force] [--verify] [--max-shard-size SIZE] [--no-source-hash] [--clean-stale] [-q]"
JSON = "[--json] [--indent N]"
TARGET = ("[--target T] [--model-arg K=V] [--target-unwrap PATH] [--target-strip-prefix PREFIX] "
          "[--unmatched {error,keep,drop}]")
GRAMMAR = {
    "validate": f"{JSON} RULES",
    "plan": f"--rules R {TARGET} [--format F] [--target-format F] {READER} [--strict] [--cost] [--workers N] [--max-shard-size SIZE] {JSON} SRC",
    "explain": f"--rules R {TARGET} [--format F] [--target-format F] {READER} {JSON} SRC KEY",
    "inspect": f"[--format F] {READER} {JSON} SRC",
    "convert": f"[--rules R] {TARGET} [--format F] [--target-format F] {READER} [--strict] {WRITE} [--output-format F] [--workers N] {JSON} SRC DST",
    "export": f"--rules R [--source-specs FILE] [--unmatched {{error,keep,drop}}] [--format F] {READER} {WRITE} {JSON} SRC DST",
    "suggest": f"--source S --target T [--model-arg K=V] [--source-model-arg K=V] [-o FILE] [--force] "
               f"[--name NAME] {READER} {JSON}",
    "verify": f"--rules R --source CKPT --source-model model:A --target-model model:B [--model-arg K=V] "
              f"[--source-model-arg K=V] [--input SHAPE_OR_FILE] [--seed SEED] [--rtol RTOL] [--atol ATOL] {READER} {JSON}",
    "plugins": f"{JSON}",
    "rules": f"{JSON}",
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
