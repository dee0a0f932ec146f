"""Export: target-layout tensors back to source keys with the same rules, bit-exact, or a named refusal."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mapper_core.train.apply import apply_to_state_dict
from mapper_core.errors import PlanError
from mapper_core.io.export import export_state_dict, plan_export
from mapper_core.plan.make import make_plan
from mapper_core.rules import parse_rules
from mapper_core.io.torch_dtypes import spec_of

GEN = torch.Generator().manual_seed(0)

RULES = """\
version: 1
rules:
  - match: 'blocks\\.(?P<i>\\d+)\\.fc\\.weight'
    target: 'layers.{i+1}.conv.weight'
    transform:
      - unsqueeze: {dim: 2}
      - transpose: {dim0: 0, dim1: 1}
  - match: 'head_(aud|lip)\\.(.+)'
    target: '{1|branch}.head.{2}'
    tables: {branch: {aud: audio, lip: video}}
  - match: 'emb\\.weight'
    target: 'embedding.weight'
    transform:
      - pad: {dim: 0, before: 0, after: 2}
      - scale: {factor: 2}
  - match: 'misc\\.(.+)'
    target: 'misc.{1}'
skip:
  - 'ignored\\..*'
"""


def source_state() -> dict[str, torch.Tensor]:
    return {
        "blocks.0.fc.weight": torch.randn(4, 3, generator=GEN),
        "blocks.7.fc.weight": torch.randn(4, 3, generator=GEN),
        "head_aud.weight": torch.randn(5, generator=GEN),
        "head_lip.a.b.bias": torch.randn(5, generator=GEN),
        "emb.weight": torch.randn(6, 2, generator=GEN),
        "misc.x.y.z": torch.arange(4),
        "ignored.w": torch.zeros(1),
    }


def forward(rules: str) -> tuple:
    rs = parse_rules(rules, "r.yaml")
    src = source_state()
    # drop: a test's rules may leave a key to no rule or skip pattern (the default, error, refuses it)
    target = apply_to_state_dict(make_plan({k: spec_of(v) for k, v in src.items()}, rs, unmatched="drop"), src)
    return rs, src, target


def finetune(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v + 0.5 if v.is_floating_point() else v + 1 for k, v in state.items()}


@pytest.mark.parametrize("with_source_specs", [False, True])
def test_round_trip_is_bit_exact(with_source_specs):
    rs, src, target = forward(RULES)
    assert target["layers.1.conv.weight"].shape == (3, 4, 1) and target["video.head.a.b.bias"].shape == (5,)
    assert target["embedding.weight"].shape == (8, 2)
    target["new_layer.weight"] = torch.ones(2)  # a layer the target added: left behind
    specs = {k: spec_of(v) for k, v in src.items()} if with_source_specs else None
    back = export_state_dict(rs, target, specs)
    assert sorted(back) == sorted(k for k in src if not k.startswith("ignored"))
    for key, value in back.items():
        assert value.dtype == src[key].dtype and torch.equal(value, src[key]), key
    plan = plan_export(rs, {k: spec_of(v) for k, v in target.items()}, specs)
    assert plan.left_behind == ("new_layer.weight",)
    assert plan.method == ("source-specs" if with_source_specs else "templates")


def test_finetuned_weights_come_back_under_source_keys():
    rs, src, target = forward(RULES)
    tuned = finetune(target)
    back = export_state_dict(rs, tuned)
    assert torch.equal(back["blocks.7.fc.weight"],
                       tuned["layers.8.conv.weight"].transpose(0, 1)[:, :, 0])
    assert torch.equal(back["head_lip.a.b.bias"], tuned["video.head.a.b.bias"])
    assert torch.equal(back["emb.weight"], tuned["embedding.weight"][:6] / 2)


def test_non_invertible_step_is_named_with_rule_and_line():
    rules = RULES.replace("pad: {dim: 0, before: 0, after: 2}", "narrow: {dim: 0, start: 0, length: 4}")
    rs, src, target = forward(rules)
    for specs in (None, {k: spec_of(v) for k, v in src.items()}):
        with pytest.raises(PlanError) as info:
            export_state_dict(rs, target, specs)
        message = str(info.value)
        assert "embedding.weight: rule 2 (line 11)" in message and "step 1 (narrow(dim=0, start=0, length=4))" in message
        assert "not invertible" in message and "cannot export 1 key with" in message


@pytest.mark.parametrize("dtype", ["F64", "F16"])
def test_casts_need_source_specs_and_only_widening_ones_invert(dtype):
    rs, src, target = forward(RULES.replace("scale: {factor: 2}", f"cast: {{dtype: {dtype}}}"))
    with pytest.raises(PlanError, match=r"step 2 \(cast\(dtype='F..'\)\) does not say what its input was"):
        export_state_dict(rs, target)
    specs = {k: spec_of(v) for k, v in src.items()}
    if dtype == "F16":
        with pytest.raises(PlanError, match=r"step 2 \(cast\(dtype='F16'\)\): not invertible: cast F32 → F16"):
            export_state_dict(rs, target, specs)
    else:
        back = export_state_dict(rs, target, specs)
        assert back["emb.weight"].dtype == torch.float32 and torch.equal(back["emb.weight"], src["emb.weight"])


def test_reshape_needs_source_specs():
    rules = RULES.replace("- transpose: {dim0: 0, dim1: 1}", "- reshape: {shape: [-1]}")
    rs, src, target = forward(rules)
    with pytest.raises(PlanError, match=r"step 2 \(reshape\(shape=\[-1\]\)\) does not say what its input was"):
        export_state_dict(rs, target)
    back = export_state_dict(rs, target, {k: spec_of(v) for k, v in src.items()})
    assert torch.equal(back["blocks.0.fc.weight"], src["blocks.0.fc.weight"])


def test_a_match_that_is_not_literal_text_and_groups_needs_source_specs():
    rules = RULES.replace("'misc\\.(.+)'", "'misc\\.[xy]\\.(.+)'")
    assert rules != RULES
    rs, src, target = forward(rules)
    plan = plan_export(rs, {k: spec_of(v) for k, v in target.items()})
    problem = next(p for p in plan.problems if p.target == "misc.y.z")
    assert "rule 3 (line 16) cannot be read backwards" in problem.message and "--source-specs FILE" in problem.message
    back = export_state_dict(rs, target, {k: spec_of(v) for k, v in src.items()})
    assert torch.equal(back["misc.x.y.z"], src["misc.x.y.z"])


def test_a_guess_taken_by_an_earlier_skip_pattern_is_refused():
    rules = RULES.replace("'ignored\\..*'", "'misc\\.x\\.q'")
    assert rules != RULES
    rs, src, target = forward(rules)
    target["misc.x.q"] = torch.zeros(1)
    plan = plan_export(rs, {k: spec_of(v) for k, v in target.items()})
    problem = next(p for p in plan.problems if p.target == "misc.x.q")
    assert "does not map back" in problem.message


def test_cli_export_writes_safetensors(tmp_path, mapper):
    rs, src, target = forward(RULES)
    (tmp_path / "rules.yaml").write_text(RULES)
    save_file({k: v.contiguous() for k, v in target.items()}, str(tmp_path / "tuned.safetensors"))
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "exported 6 tensors to back.safetensors" in proc.stdout
    back = load_file(str(tmp_path / "back.safetensors"))
    assert all(torch.equal(back[k], src[k]) for k in back) and len(back) == 6

    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "already exists; pass --force" in proc.stderr
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--force", "--json",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"] == {"exported": 6, "left_behind": 0, "problems": 0, "restored_aliases": 0, "failed": False}
    emb = next(e for e in report["exported"] if e["source"] == "emb.weight")
    assert emb["inverse"] == [{"scale": {"factor": 0.5}}, {"narrow": {"dim": 0, "start": 0, "length": 6}}]


def test_cli_export_writes_like_convert_with_verify_and_shards(tmp_path, mapper):
    rs, src, target = forward(RULES)
    (tmp_path / "rules.yaml").write_text(RULES)
    save_file({k: v.contiguous() for k, v in target.items()}, str(tmp_path / "tuned.safetensors"))
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--verify",
                  "--max-shard-size", "64B", "--no-source-hash", "-q", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)["written"]
    assert written["checked"] == 6 and written["source_sha256"] is None
    assert len(written["paths"]) > 2 and written["paths"][-1] == "back.safetensors.index.json"
    text = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--verify",
                  "--max-shard-size", "64B", "--force", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "5 shards of" in text.stdout and "index: back.safetensors.index.json" in text.stdout
    assert "verified 6 tensors bit for bit" in text.stdout
    bad = mapper("export", "tuned.safetensors", "other.safetensors", "--rules", "rules.yaml",
                 "--max-shard-size", "huge", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("mapper: error: size 'huge'")


def test_cli_export_refuses_non_invertible_with_exit_1(tmp_path, mapper):
    rules = RULES.replace("pad: {dim: 0, before: 0, after: 2}", "narrow: {dim: 0, start: 0, length: 4}")
    rs, src, target = forward(rules)
    (tmp_path / "rules.yaml").write_text(rules)
    save_file({k: v.contiguous() for k, v in target.items()}, str(tmp_path / "tuned.safetensors"))
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 1 and "narrow" in proc.stderr and "not invertible" in proc.stderr
    assert not (tmp_path / "back.safetensors").exists()


# --- writing through convert's machinery ---------------------------------------------------------

TIED_RULES = """\
version: 1
rules:
  - match: 'old\\.(.+)'
    target: 'new.{1}'
"""


def tied_checkpoint(tmp_path: Path, extra: dict | None = None) -> torch.Tensor:
    """A target-layout torch file whose two keys are one tensor (tied weights), and its rules."""
    (tmp_path / "rules.yaml").write_text(TIED_RULES)
    w = torch.randn(4, 3, generator=GEN)
    state = {"new.emb": w, "new.head": w, "new.bias": torch.arange(3.0)}
    torch.save({"state_dict": state, **extra} if extra else state, tmp_path / "tuned.pt")
    return w


def test_cli_export_tied_weights_are_stored_once_as_aliases(tmp_path, mapper):
    from safetensors import safe_open

    from mapper_core.io.formats.aliases import load_safetensors

    w = tied_checkpoint(tmp_path)
    proc = mapper("export", "tuned.pt", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 tied key stored once" in proc.stdout
    stored = load_file(str(tmp_path / "back.safetensors"))
    assert sorted(stored) == ["old.bias", "old.emb"]  # old.head is not stored a second time
    with safe_open(str(tmp_path / "back.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["mapper.aliases"]) == {"old.head": "old.emb"}
    back = load_safetensors(tmp_path / "back.safetensors")
    assert back["old.head"] is back["old.emb"] and torch.equal(back["old.emb"], w)


def test_cli_export_metadata_matches_convert(tmp_path, mapper):
    import hashlib

    from safetensors import safe_open

    import mapper_core

    tied_checkpoint(tmp_path)
    proc = mapper("export", "tuned.pt", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with safe_open(str(tmp_path / "back.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["mapper.version"] == mapper_core.__version__
    assert meta["mapper.source"] == "tuned.pt"
    assert meta["mapper.source_sha256"] == hashlib.sha256((tmp_path / "tuned.pt").read_bytes()).hexdigest()
    assert meta["mapper.rules"] == "rules"
    assert meta["mapper.rules_sha256"] == hashlib.sha256(TIED_RULES.encode()).hexdigest()
    assert "mapper_export_rules" not in meta


def test_cli_export_accepts_the_reader_options(tmp_path, mapper):
    from fractions import Fraction  # a global weights_only refuses

    tied_checkpoint(tmp_path, extra={"note": Fraction(1, 3)})
    proc = mapper("export", "tuned.pt", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "tuned.pt" in proc.stderr and "--trust-pickle" in proc.stderr
    assert not (tmp_path / "back.safetensors").exists()
    original = {"state_dict": {"old.emb": torch.zeros(4, 3), "old.head": torch.zeros(4, 3),
                               "old.bias": torch.zeros(3)}, "note": Fraction(1, 2)}
    torch.save(original, tmp_path / "original.pt")  # the source layout, which needs --trust-pickle too
    proc = mapper("export", "tuned.pt", "back.safetensors", "--rules", "rules.yaml", "--trust-pickle",
                  "--unwrap", "state_dict", "--strip-prefix", "", "--source-specs", "original.pt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "inverted from source-specs" in proc.stdout
    assert "trust_pickle" in proc.stderr  # the warning is printed, not hidden
    assert sorted(load_file(str(tmp_path / "back.safetensors"))) == ["old.bias", "old.emb"]


@pytest.mark.parametrize("dst, message", [
    ("missing/back.safetensors", "missing/back.safetensors: the folder missing does not exist"),
    ("back.pt", "back.pt: the output must end with .safetensors"),
])
def test_cli_export_bad_destination_is_exit_2_and_writes_nothing(tmp_path, dst, message, mapper):
    tied_checkpoint(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = mapper("export", "tuned.pt", dst, "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli_export_to_a_folder_writes_model_safetensors_in_it_like_convert(tmp_path, mapper):
    tied_checkpoint(tmp_path)
    (tmp_path / "out").mkdir()
    proc = mapper("export", "tuned.pt", "out", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "to out/model.safetensors" in proc.stdout
    assert sorted(load_file(str(tmp_path / "out" / "model.safetensors"))) == ["old.bias", "old.emb"]
    (tmp_path / "out" / "model.safetensors").unlink()
    (tmp_path / "out" / "model.safetensors").mkdir()  # a folder where the file should go
    proc = mapper("export", "tuned.pt", "out", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "out/model.safetensors: is a directory" in proc.stderr, proc.stderr


def test_cli_export_refuses_to_overwrite_its_source_even_with_force(tmp_path, mapper):
    save_file({"new.a": torch.ones(2)}, str(tmp_path / "tuned.safetensors"))
    (tmp_path / "rules.yaml").write_text(TIED_RULES)
    data = (tmp_path / "tuned.safetensors").read_bytes()
    proc = mapper("export", "tuned.safetensors", "tuned.safetensors", "--rules", "rules.yaml", "--force", cwd=tmp_path)
    assert proc.returncode == 2 and "tuned.safetensors: is the source file" in proc.stderr
    assert (tmp_path / "tuned.safetensors").read_bytes() == data


def test_cli_export_sigterm_mid_write_leaves_nothing(tmp_path, monkeypatch):
    import signal

    from mapper_core.io.atomic import TEMP_SUFFIX
    from mapper_core.cli import main
    from mapper_core.io.formats.writer import FileWriter

    tied_checkpoint(tmp_path)
    real_write = FileWriter.write

    def write_then_terminated(self, progress=None):
        real_write(self, progress)
        assert any(p.name.endswith(TEMP_SUFFIX) for p in tmp_path.iterdir())  # mid-write indeed
        os.kill(os.getpid(), signal.SIGTERM)  # AtomicFiles turns it into Terminated

    monkeypatch.setattr(FileWriter, "write", write_then_terminated)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "tuned.pt", "back.safetensors", "--rules", "rules.yaml"]) == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rules.yaml", "tuned.pt"]
