"""Options are never abbreviated: a prefix of a longer option is an unknown option, refused by the
command's own parser with the option meant, not taken for that longer one (trial: `suggest
--source-model model:X` ran as `--source-model-arg model:X` and complained about an option the
user never typed)."""
from __future__ import annotations

import pytest

from mapper_core.cli import main


def _refusal(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_a_prefix_of_an_option_is_not_that_option(capsys):
    err = _refusal(capsys, "suggest", "--source", "a.safetensors", "--source-model", "model:x", "--target", "b")
    assert "mapper suggest: error: unrecognized arguments: --source-model model:x" in err
    assert "did you mean --source-model-arg" in err and "options are not abbreviated" in err
    assert "only applies to a model:NAME" not in err  # what the abbreviation used to lead to


@pytest.mark.parametrize("argv, meant", [
    (["convert", "a.safetensors", "b.safetensors", "--work", "2"], "--workers"),
    (["plan", "a.safetensors", "--rules", "r.yaml", "--targt", "t"], "--target"),
    (["inspect", "a.safetensors", "--jso"], "--json"),
])
def test_the_option_meant_is_named(capsys, argv, meant):
    err = _refusal(capsys, *argv)
    assert "unrecognized arguments" in err and f"did you mean {meant}" in err


def test_a_stray_word_is_named_without_a_guess(capsys):
    err = _refusal(capsys, "plan", "a.safetensors", "--rules", "r.yaml", "extra")
    assert err.rstrip().endswith("mapper plan: error: unrecognized arguments: extra")
