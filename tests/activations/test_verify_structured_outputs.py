"""verify reads tensors out of what a model returns however it is packed: a plain dataclass instance
and a named tuple give named places (``.logits``) like a dict's keys; a position matches a name
where the other side has none; an output that holds itself, or is nested very deep, ends."""
from __future__ import annotations

import dataclasses
import textwrap
from typing import NamedTuple, Optional

import torch
from cli_runner import mapper
from safetensors.torch import save_file

from mapper_core.activations import compare_models, render_text
from mapper_core.activations.outputs import leaves

PLUGIN = textwrap.dedent('''
    import dataclasses
    from typing import Optional

    import torch
    from mapper_core.plugins import ModelFactory, hookimpl


    @dataclasses.dataclass
    class Output:
        logits: torch.Tensor
        hidden: torch.Tensor
        note: Optional[str] = None


    def _net(renamed=False):
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(4, 6)
                setattr(self, "classifier" if renamed else "head", nn.Linear(6, 3))

            def forward(self, x):
                hidden = self.body(x).relu()
                return Output((self.classifier if renamed else self.head)(hidden), hidden, "done")

        return Net()


    @hookimpl
    def mapper_models():
        return [ModelFactory("net", _net), ModelFactory("renamed", lambda: _net(renamed=True))]
''')
RIGHT = r"""version: 1
rules:
  - match: 'body\.(.+)'
    target: 'body.{1}'
  - match: 'head\.(.+)'
    target: 'classifier.{1}'
"""
SKIP_HEAD = r"""version: 1
rules:
  - match: 'body\.(.+)'
    target: 'body.{1}'
skip:
  - 'head\..*'
"""


def _verify(tmp_path, rules: str):
    (tmp_path / "dcmodels.py").write_text(PLUGIN)
    torch.manual_seed(0)
    state = {"body.weight": torch.randn(6, 4), "body.bias": torch.randn(6),
             "head.weight": torch.randn(3, 6), "head.bias": torch.randn(3)}
    save_file(state, str(tmp_path / "net.safetensors"))
    (tmp_path / "rules.yaml").write_text(rules)
    return mapper("--plugin", "dcmodels", "verify", "--rules", tmp_path / "rules.yaml", "--source",
                  tmp_path / "net.safetensors", "--source-model", "model:net", "--target-model", "model:renamed",
                  "--input", "2x4", env={"PYTHONPATH": str(tmp_path)})


def test_a_model_returning_a_dataclass_has_its_final_outputs_compared(tmp_path):
    done = _verify(tmp_path, RIGHT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not comparable" not in done.stdout
    assert "result: verified: 2 of 2 paired modules and the final outputs within tolerance" in done.stdout


def test_a_skipped_head_shows_in_a_dataclasss_field(tmp_path):
    done = _verify(tmp_path, SKIP_HEAD)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "result: DIVERGED: the final outputs beyond tolerance" in done.stdout


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    hidden: Optional[torch.Tensor] = None


class Pair(NamedTuple):
    logits: torch.Tensor
    hidden: torch.Tensor


def test_dataclass_and_named_tuple_places_are_named():
    x, y = torch.zeros(2, 3), torch.ones(2, 5)
    assert [p for p, _, _ in leaves(Out(x, y))] == [".logits", ".hidden"]
    assert [p for p, _, _ in leaves({"out": Pair(x, y)})] == ["['out'].logits", "['out'].hidden"]
    assert [p for p, _, _ in leaves(Out(x))] == [".logits"]  # None fields hold nothing to compare


def _compare(source_output, target_output):
    model = torch.nn.Linear(3, 3)
    return compare_models([], model, model, [torch.randn(2, 3)], run_source=lambda m, i: source_output(m(*i)),
                          run_target=lambda m, i: target_output(m(*i)))


def test_names_match_names_and_positions_match_where_one_side_has_none():
    same = _compare(lambda y: Out(y, 2 * y), lambda y: Out(y, 2 * y))
    assert same.final.ok is True and same.complete
    off = _compare(lambda y: Out(y, 2 * y), lambda y: Out(y, 3 * y))
    assert off.final.ok is False and "the final outputs" in render_text(off)
    assert _compare(lambda y: (y, 2 * y), lambda y: Pair(y, 2 * y)).final.ok is True  # return_dict=False vs named
    assert _compare(lambda y: {"logits": y, "hidden": 2 * y}, lambda y: Out(y, 2 * y)).final.ok is True
    other = _compare(lambda y: {"scores": y, "hidden": 2 * y}, lambda y: Out(y, 2 * y))
    assert other.final.ok is None
    assert ("not comparable: the source model returns 2 tensors (['scores'] [2, 3], ['hidden'] [2, 3]) and the "
            "target model 2 tensors (.logits [2, 3], .hidden [2, 3])") == other.final.note


def test_an_output_that_holds_itself_or_nests_deep_ends():
    y = torch.ones(2)
    loop: list = [y]
    loop.append(loop)
    assert [p for p, _, _ in leaves(loop)] == ["[0]"]
    deep: object = y
    for _ in range(5000):  # past Python's recursion limit
        deep = [deep]
    [(place, tensor, steps)] = leaves(deep)
    assert tensor is y and len(steps) == 5000 and place == "[0]" * 5000
    node = Out(y)
    node.hidden = node  # type: ignore[assignment]  # a field that points back
    assert [p for p, _, _ in leaves(node)] == [".logits"]


def test_a_module_returning_a_dataclass_is_compared_as_a_pair():
    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)

        def forward(self, x):
            return Out(self.fc(x))

    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            return self.inner(x).logits

    model = Outer()
    result = compare_models([("inner", "inner")], model, model, [torch.randn(2, 3)])
    [pair] = result.modules
    assert pair.ok is True and pair.source_shape == (2, 3), pair.note
