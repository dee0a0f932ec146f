"""`mapper export` of a target-layout checkpoint with keys no rule produces (a fine-tuned model's new
layers): left behind by default, kept or refused with --unmatched, as `convert` names the same choices."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

from mapper_core.errors import PlanError  # noqa: E402
from mapper_core.io.export import export_state_dict, unmatched_policy  # noqa: E402
from mapper_core.rules import parse_rules  # noqa: E402

RULES = """\
version: 1
rules:
  - match: 'enc\\.(\\d+)\\.weight'
    target: 'encoder.{1}.weight'
    transform:
      - unsqueeze: {dim: 2}
"""


def tuned(tmp_path, rules: str = RULES) -> dict:
    """A fine-tuned target-layout checkpoint: two mapped tensors and a new head no rule produces."""
    state = {"encoder.0.weight": torch.randn(4, 3, 1), "encoder.1.weight": torch.randn(2, 4, 1),
             "head.weight": torch.randn(5, 2), "head.bias": torch.randn(5)}
    save_file(state, str(tmp_path / "tuned.safetensors"))
    (tmp_path / "rules.yaml").write_text(rules)
    return state


def test_new_layers_are_left_behind_by_default_and_listed(tmp_path, mapper):
    state = tuned(tmp_path)
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "exported 2 tensors to back.safetensors" in proc.stdout
    assert "left behind 2 target keys no rule produces (--unmatched keep writes them): head.bias, head.weight" \
        in proc.stdout
    back = load_file(str(tmp_path / "back.safetensors"))
    assert sorted(back) == ["enc.0.weight", "enc.1.weight"]
    assert torch.equal(back["enc.1.weight"], state["encoder.1.weight"][:, :, 0])


def test_unmatched_keep_writes_them_under_their_own_names(tmp_path, mapper):
    state = tuned(tmp_path)
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--unmatched", "keep",
                  "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["unmatched"] == "keep" and report["kept"] == ["head.bias", "head.weight"]
    assert report["summary"] == {"exported": 2, "kept": 2, "problems": 0, "restored_aliases": 0, "failed": False}
    assert "left_behind" not in report
    back = load_file(str(tmp_path / "back.safetensors"))
    assert sorted(back) == ["enc.0.weight", "enc.1.weight", "head.bias", "head.weight"]
    assert torch.equal(back["head.weight"], state["head.weight"])


def test_the_rules_unmatched_keep_is_the_default_way_back(tmp_path, mapper):
    tuned(tmp_path, RULES + "unmatched: keep\n")
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "kept 2 target keys no rule produces, under their own names" in proc.stdout
    assert len(load_file(str(tmp_path / "back.safetensors"))) == 4
    drop = mapper("export", "tuned.safetensors", "drop.safetensors", "--rules", "rules.yaml", "--unmatched", "drop",
                  cwd=tmp_path)
    assert drop.returncode == 0 and len(load_file(str(tmp_path / "drop.safetensors"))) == 2


def test_unmatched_error_refuses_with_the_keys_and_the_way_out(tmp_path, mapper):
    tuned(tmp_path)
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--unmatched", "error",
                  cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "back.safetensors").exists()
    assert "2 target keys no rule produces (new layers?); nothing was written" in proc.stderr
    assert "--unmatched drop" in proc.stderr and "--unmatched keep" in proc.stderr
    assert "  head.bias\n  head.weight" in proc.stderr
    assert "Source keys no rule takes" not in proc.stderr  # convert's advice is about the other direction
    as_json = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--unmatched",
                     "error", "--json", cwd=tmp_path)
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and data["refused"] == ["head.bias", "head.weight"] and "left_behind" not in data
    assert data["summary"]["failed"] is True and data["summary"]["refused"] == 2


def test_a_kept_key_that_clashes_with_an_exported_name_is_refused(tmp_path, mapper):
    state = tuned(tmp_path)
    state["enc.0.weight"] = torch.zeros(1)  # a target key named like the source key encoder.0.weight goes back to
    save_file(state, str(tmp_path / "tuned.safetensors"))
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--unmatched", "keep",
                  cwd=tmp_path)
    assert proc.returncode == 1 and "have the name an exported source key gets" in proc.stderr
    assert "  enc.0.weight" in proc.stderr and not (tmp_path / "back.safetensors").exists()


def test_python_export_state_dict_takes_the_same_policy():
    rules = parse_rules(RULES, "r.yaml")
    state = {"encoder.0.weight": torch.randn(4, 3, 1), "new.weight": torch.randn(2)}
    assert sorted(export_state_dict(rules, state)) == ["enc.0.weight"]
    kept = export_state_dict(rules, state, unmatched="keep")
    assert sorted(kept) == ["enc.0.weight", "new.weight"] and kept["new.weight"] is state["new.weight"]
    with pytest.raises(PlanError, match=r"1 target key no rule produces"):
        export_state_dict(rules, state, unmatched="error")
    with pytest.raises(ValueError, match="unknown unmatched policy 'skip'"):
        unmatched_policy(rules, "skip")


def test_an_export_that_would_write_nothing_is_refused_with_the_prefix_named(tmp_path, mapper):
    state = tuned(tmp_path)
    save_file({f"model.{k}": v for k, v in state.items()}, str(tmp_path / "lit.safetensors"))
    proc = mapper("export", "lit.safetensors", "back.safetensors", "--rules", "rules.yaml", "--unmatched", "keep",
                  cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "back.safetensors").exists()
    assert "the export would write 0 tensors" in proc.stderr and "Every key starts with 'model.'" in proc.stderr
    with pytest.raises(PlanError, match="the export would write 0 tensors"):
        export_state_dict(parse_rules(RULES, "r.yaml"), {f"model.{k}": v for k, v in state.items()}, unmatched="keep")


def test_a_prefixed_source_layout_file_is_named_and_strip_prefix_stays_with_src(tmp_path, mapper):
    tuned(tmp_path)
    torch.save({"state_dict": {"model.enc.0.weight": torch.randn(4, 3), "model.enc.1.weight": torch.randn(2, 4)}},
               tmp_path / "pre.ckpt")
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml",
                  "--source-specs", "pre.ckpt", cwd=tmp_path)
    assert proc.returncode == 1 and "pre.ckpt starts with 'model.'" in proc.stderr
    assert "--strip-prefix model." in proc.stderr
    torch.save({"state_dict": {"model." + k: v for k, v in load_file(str(tmp_path / "tuned.safetensors")).items()}},
               tmp_path / "tuned.ckpt")
    torch.save({"enc.0.weight": torch.randn(4, 3), "enc.1.weight": torch.randn(2, 4)}, tmp_path / "bare.pt")
    # --strip-prefix reads SRC (a Lightning fine-tune) without its prefix; the bare pretrained file is read as it is
    proc = mapper("export", "tuned.ckpt", "back.safetensors", "--rules", "rules.yaml", "--source-specs", "bare.pt",
                  "--strip-prefix", "model.", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(load_file(str(tmp_path / "back.safetensors"))) == ["enc.0.weight", "enc.1.weight"]
