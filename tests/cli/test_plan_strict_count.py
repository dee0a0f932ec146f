"""`mapper plan --strict` counts the uninitialized target keys in proper English (torch-free)."""
from __future__ import annotations

import pytest
from tiny_safetensors import write_f32


@pytest.mark.parametrize(("extra", "said"), [(["head.w"], "1 uninitialized target key;"),
                                              (["head.w", "head.b"], "2 uninitialized target keys;")])
def test_strict_refusal_says_key_or_keys(tmp_path, mapper, extra, said):
    write_f32(tmp_path / "src.safetensors", {"a.w": [2]})
    write_f32(tmp_path / "target.safetensors", {"b.w": [2], **{k: [2] for k in extra}})
    (tmp_path / "rules.yaml").write_text("version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\n")
    proc = mapper("plan", "src.safetensors", "--rules", "rules.yaml", "--target", "target.safetensors", "--strict",
                  cwd=tmp_path)
    assert proc.returncode == 1
    assert f"--strict: {said} add rules that fill them" in proc.stderr and "key(s)" not in proc.stderr


def test_strict_without_target_is_refused_not_a_silent_pass(tmp_path, mapper):
    write_f32(tmp_path / "src.safetensors", {"a.w": [2]})
    (tmp_path / "rules.yaml").write_text("version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\n")
    proc = mapper("plan", "src.safetensors", "--rules", "rules.yaml", "--strict", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--strict fails the plan on uninitialized target keys" in proc.stderr and "add --target T" in proc.stderr
    assert "Traceback" not in proc.stderr
