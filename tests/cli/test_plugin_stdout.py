"""What a plugin's own code prints goes to stderr: stdout holds only the command's report (one JSON document)."""
from __future__ import annotations

import json

import pytest

NOISY = """
    print("importing noisy")
    from mapper_core.plugins import ModelFactory, hookimpl

    def _build(**kw):
        print("building the model with", kw)
        import torch
        return torch.nn.Sequential(torch.nn.Linear(2, 3))

    @hookimpl
    def mapper_models():
        print("contributing models")
        return [ModelFactory("noisy", _build, "prints while building")]
"""


def test_a_plugin_printing_at_import_leaves_plugins_json_intact(plugin_modules, mapper):
    name = plugin_modules("noisy_plugin_a", NOISY)
    done = mapper("--plugin", name, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # one document: the prints are not in it
    assert "importing noisy" in done.stderr and "contributing models" in done.stderr


def test_a_model_factory_printing_leaves_plan_json_intact(plugin_modules, mapper, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    name = plugin_modules("noisy_plugin_b", NOISY)
    save_file({"w": torch.ones(3, 2), "b": torch.ones(3)}, str(tmp_path / "src.safetensors"))
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: '(w|b)'\n    target: '0.{1|full}'\n"
                                     "    tables: {full: {w: weight, b: bias}}\n")
    done = mapper("--plugin", name, "plan", tmp_path / "src.safetensors", "--rules", tmp_path / "r.yaml",
                  "--target", "model:noisy", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["summary"]["mapped"] == 2
    assert "building the model with {}" in done.stderr
