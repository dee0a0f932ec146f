"""A wrapper's prefix on every unmatched key (Lightning's ``model.``, DDP's ``module.``) is named with --strip-prefix."""
from __future__ import annotations

import json
import struct

import pytest

from mapper_core.plan.prefix_hint import strip_prefix_hint
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern
from cli_runner import mapper  # tests/helpers

RULES = RuleSet("r", (Rule(0, r"enc\.(\d+)\.(weight|bias)", "encoder.{1}.{2}"),), skip=(SkipPattern(r"head\..*"),))


def test_the_shared_prefix_the_rules_take_keys_without_is_found():
    keys = ["model.enc.0.weight", "model.enc.0.bias", "model.head.w"]
    assert strip_prefix_hint(keys, RULES) == "model."
    assert strip_prefix_hint(["module.model.enc.1.bias"], RULES) == "module.model."


def test_no_hint_when_the_keys_differ_or_the_rules_would_still_not_take_them():
    assert strip_prefix_hint([], RULES) is None
    assert strip_prefix_hint(["model.enc.0.weight", "net.enc.0.bias"], RULES) is None  # no shared prefix
    assert strip_prefix_hint(["model.dec.0.weight", "model.dec.1.weight"], RULES) is None  # still unmatched
    assert strip_prefix_hint(["enc.0.gamma"], RULES) is None  # no dot-ended prefix helps
    # most of the keys must be taken once stripped, not one of many
    assert strip_prefix_hint(["m.enc.0.weight"] + [f"m.x{i}" for i in range(9)], RULES) is None


def _safetensors(path, keys):
    entries, pos = {}, 0
    for k in keys:
        entries[k] = {"dtype": "F32", "shape": [1], "data_offsets": [pos, pos + 4]}
        pos += 4
    header = json.dumps(entries).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * pos)


RULES_YAML = "version: 1\nrules:\n  - match: 'enc\\.(\\d+)\\.(weight|bias)'\n    target: 'e.{1}.{2}'\n"


def test_for_safetensors_the_hint_is_the_prefix_in_the_patterns_and_strip_prefix_is_refused(tmp_path):
    src = tmp_path / "lit.safetensors"
    _safetensors(src, ["model.enc.0.weight", "model.enc.0.bias"])
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES_YAML)
    done = mapper("plan", src, "--rules", rules)
    assert done.returncode == 1 and "every unmatched key starts with 'model.'" in done.stderr
    assert "begin the rules' patterns with 'model\\.'" in done.stderr
    done = mapper("explain", src, "model.enc.0.bias", "--rules", rules)
    assert done.returncode == 1 and "every unmatched key starts with 'model.'" in done.stderr
    # the safetensors reader reads keys as stored: the option used to be ignored without a word
    for flag, value in (("--strip-prefix", "model."), ("--unwrap", "state_dict")):
        done = mapper("plan", src, "--rules", rules, flag, value)
        assert done.returncode == 2 and f"{flag} applies to torch checkpoints; this is a safetensors" in done.stderr


def test_for_torch_the_hint_is_strip_prefix_and_it_works(tmp_path):
    torch = pytest.importorskip("torch")
    src = tmp_path / "lit.ckpt"
    torch.save({"state_dict": {"model.enc.0.weight": torch.zeros(2), "model.enc.0.bias": torch.zeros(2)},
                "epoch": 3}, src)
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES_YAML)
    done = mapper("plan", src, "--rules", rules)
    assert done.returncode == 1 and "add --strip-prefix model." in done.stderr
    done = mapper("plan", src, "--rules", rules, "--strip-prefix", "model.")
    assert done.returncode == 0 and "strip-prefix" not in done.stderr
    done = mapper("convert", src, tmp_path / "out.safetensors", "--rules", rules)
    assert done.returncode == 1 and "every one starts with 'model.'" in done.stderr
    assert "--strip-prefix model. removes" in done.stderr


def test_shared_prefix():
    from mapper_core.plan.prefix_hint import shared_prefix

    assert shared_prefix(["model.a", "model.b.c"]) == "model."
    assert shared_prefix(["model.a", "net.a"]) is None and shared_prefix([]) is None
    assert shared_prefix(["model.", "model.a"]) is None and shared_prefix(["a"]) is None
