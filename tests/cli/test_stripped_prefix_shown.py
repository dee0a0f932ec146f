"""The 'module.' prefix the torch reader strips by itself is said: in the plan's header, its JSON, and
a hint when the rules were written for the keys as torch.load shows them."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

RULES_WITH_PREFIX = "version: 1\nrules:\n  - match: 'module\\.(.+)'\n    target: '{1}'\n"
RULES_WITHOUT = "version: 1\nrules:\n  - match: '(.+)'\n    target: 'net.{1}'\n"


@pytest.fixture
def ddp(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "ddp.pt")
    (tmp_path / "with.yaml").write_text(RULES_WITH_PREFIX)
    (tmp_path / "without.yaml").write_text(RULES_WITHOUT)
    return tmp_path


def test_header_and_json_say_the_prefix_was_stripped(ddp, mapper):
    done = mapper("plan", "ddp.pt", "--rules", "without.yaml", cwd=ddp)
    assert done.returncode == 0, done.stderr
    assert ("  source: ddp.pt: 4 keys (the 'module.' prefix of DistributedDataParallel stripped; "
            "--strip-prefix '' keeps it)") in done.stdout.splitlines()
    assert done.stderr == ""  # the rules fit: no hint
    data = json.loads(mapper("plan", "ddp.pt", "--rules", "without.yaml", "--json", cwd=ddp).stdout)
    assert (data["stripped_prefix"], data["unwrap_path"]) == ("module.", "")


def test_rules_written_with_the_prefix_get_a_hint_with_the_fix(ddp, mapper):
    done = mapper("plan", "ddp.pt", "--rules", "with.yaml", cwd=ddp)
    assert done.returncode == 1
    assert "the reader stripped the 'module.' prefix of DistributedDataParallel" in done.stderr
    assert "'module.0.weight' is planned as '0.weight'" in done.stderr
    assert "write the patterns without 'module\\.', or pass --strip-prefix ''" in done.stderr
    fixed = mapper("plan", "ddp.pt", "--rules", "with.yaml", "--strip-prefix", "", cwd=ddp)
    assert fixed.returncode == 0 and "stripped" not in fixed.stdout and fixed.stderr == ""


def test_no_note_without_a_stripped_prefix(tmp_path, mapper):
    torch.save({"a.w": torch.ones(1)}, tmp_path / "plain.pt")
    (tmp_path / "r.yaml").write_text(RULES_WITHOUT)
    done = mapper("plan", "plain.pt", "--rules", "r.yaml", cwd=tmp_path)
    assert "  source: plain.pt: 1 key" in done.stdout.splitlines()
    data = json.loads(mapper("plan", "plain.pt", "--rules", "r.yaml", "--json", cwd=tmp_path).stdout)
    assert data["stripped_prefix"] == ""


def test_convert_says_it_too(tmp_path, mapper):
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(2, 3)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "ddp.pt")
    done = mapper("convert", tmp_path / "ddp.pt", tmp_path / "o.safetensors")
    assert done.returncode == 0, done.stderr
    assert "source keys (the 'module.' prefix of DistributedDataParallel stripped; --strip-prefix '' keeps it)" \
        in done.stdout
    asked = mapper("convert", tmp_path / "ddp.pt", tmp_path / "p.safetensors", "--strip-prefix", "module.")
    assert asked.returncode == 0 and "DistributedDataParallel" not in asked.stdout  # the user asked for it
