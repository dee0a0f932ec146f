"""``--model-arg``: a value of the wrong type is named with the type it was given as and the model's
own description (it used to be only torch's "'<' not supported between 'str' and 'int'"); a
``model:NAME`` target is built on the meta device when it can be, so ``plan`` costs no memory for
it however large the arguments make it; a model that cannot be built there is built as usual."""
from __future__ import annotations

import json
import textwrap

import pytest
from tiny_safetensors import write_f32

pytest.importorskip("torch")

PLUGIN = textwrap.dedent('''
    from mapper_core.plugins import ModelFactory, hookimpl

    BUILT = []  # the device each build ran on


    def _wide(width=2):
        import torch

        if width < 1:
            raise TypeError(f"width must be positive, got {width}")
        model = torch.nn.Linear(width, 2)
        BUILT.append(str(model.weight.device))
        return model


    def _data_dependent():
        import warnings

        import torch

        warnings.warn("building the data model")
        model = torch.nn.Linear(2, 2)
        int(model.weight.sum() > -1e9)  # needs real values: cannot run on the meta device
        return model


    @hookimpl
    def mapper_models():
        return [ModelFactory("wide", _wide, "Wide(width=2): one Linear(width, 2)"),
                ModelFactory("data", _data_dependent, "a model whose building reads its own values")]
''')
RULES = "version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"


@pytest.fixture
def run(tmp_path, mapper):
    (tmp_path / "model_plugin.py").write_text(PLUGIN)
    (tmp_path / "r.yaml").write_text(RULES)
    write_f32(tmp_path / "src.safetensors", {"weight": [2, 2], "bias": [2]})

    def run(*args):
        done = mapper("--plugin", "model_plugin", "plan", "src.safetensors", "--rules", "r.yaml", *args,
                      env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    return run


def test_a_text_value_is_named_with_its_type_and_the_model(run):
    done = run("--target", "model:wide", "--model-arg", "width=abc")
    assert done.returncode == 2
    assert done.stderr == (
        "mapper: error: model 'model_plugin:wide' cannot be built with width='abc' (a str): '<' not supported "
        "between instances of 'str' and 'int'; check the model arguments (the model is Wide(width=2): one "
        'Linear(width, 2)); model arguments are read as JSON (512, 0.5, true, "name"): width was given as text\n')


def test_a_float_value_is_named_as_a_float(run):
    done = run("--target", "model:wide", "--model-arg", "width=1e3")
    assert done.returncode == 2
    assert "cannot be built with width=1000.0 (a float): " in done.stderr
    assert "given as text" not in done.stderr


def test_the_target_model_is_built_on_the_meta_device(run):
    """Linear(10**7, 2) as F32 is 80 MB real; 10**12 would be 8 TB: only the meta device builds it."""
    done = run("--target", "model:wide", "--model-arg", "width=1000000000000", "--json")
    assert done.returncode == 1, done.stderr  # the shapes differ: a plan with errors, not a failed build
    plan = json.loads(done.stdout)
    assert [m["target"] for m in plan["mismatched"]] == ["weight"]
    assert "[2, 1000000000000]" in json.dumps(plan["mismatched"])


def test_a_model_that_needs_real_values_is_built_as_usual(run):
    done = run("--target", "model:data")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("building the data model") == 1  # the failed meta attempt's warning is not shown
