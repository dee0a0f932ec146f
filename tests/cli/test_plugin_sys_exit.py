"""Plugin code that calls ``sys.exit`` (raises SystemExit) while a command runs fails like any other
plugin code: ``mapper: error:`` naming the plugin and what it was doing, saying it called sys.exit,
exit 2 (docs/cli.md, docs/plugins.md) — not the plugin's own exit code with nothing said.
The command line's own exits (--help, --version, usage errors) are as they were."""
from __future__ import annotations

import textwrap

import pytest

from tiny_safetensors import write_f32

PLUGIN = textwrap.dedent('''
    import sys

    from mapper_core.plugins import Format, ModelFactory, RuleSetSource, TransformSpec, hookimpl
    from mapper_core.specs import TensorSpec


    class ExitingReader:
        """Reads a ".exits" file, whose text says where the reader calls sys.exit."""

        def __init__(self, path):
            self.when = open(path).read().strip()
            if self.when == "open":
                sys.exit(3)

        def specs(self):
            if self.when == "specs":
                raise SystemExit("the reader gave up")
            return {"w": TensorSpec("F32", (2, 2))}

        def get_tensor(self, key):
            sys.exit(5)

        def close(self):
            pass


    def _spec(spec, **params):
        sys.exit(3)


    def _loader():
        sys.exit()


    def _build():
        sys.exit(3)


    def _net(exit_in_forward=False):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(4, 4)

            def forward(self, x):
                if exit_in_forward:
                    sys.exit(4)
                return self.lin(x)

        return Net()


    @hookimpl
    def mapper_formats():
        return [Format("exits", (".exits",), open=lambda path, **options: ExitingReader(path))]


    @hookimpl
    def mapper_transforms():
        return [TransformSpec("exits", apply=lambda t: t, spec=_spec, description="calls sys.exit")]


    @hookimpl
    def mapper_rule_sets():
        return [RuleSetSource("exits", "calls sys.exit", loader=_loader)]


    @hookimpl
    def mapper_models():
        return [ModelFactory("exits", _build), ModelFactory("net", _net),
                ModelFactory("exits_forward", lambda: _net(exit_in_forward=True))]
''')
ADVICE = "plugin code must raise an exception to fail, not end the process"


@pytest.fixture
def run(tmp_path, mapper):
    (tmp_path / "exiting_plugin.py").write_text(PLUGIN)
    write_f32(tmp_path / "src.safetensors", {"w": [2, 2]})

    def run(*args):
        done = mapper("--plugin", "exiting_plugin", *args, env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    return run


def _said(done, message: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert f"mapper: error: {message}: {ADVICE}\n" in done.stderr, done.stderr


@pytest.mark.parametrize("when, message", [
    ("open", "plugin 'exiting_plugin', format 'exits': open() called sys.exit(3)"),
    ("specs", "plugin 'exiting_plugin', format 'exits', reader ExitingReader: specs() called "
              "sys.exit('the reader gave up')"),
])
def test_a_reader_calling_sys_exit_is_the_plugins_error(run, tmp_path, when, message):
    (tmp_path / "m.exits").write_text(when)
    _said(run("inspect", "m.exits", "--json"), message)


def test_a_transforms_spec_calling_sys_exit_is_the_plugins_error(run, tmp_path):
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"
                                     "    transform: [{exits: {}}]\n")
    _said(run("plan", "src.safetensors", "--rules", "r.yaml"),
          "plugin 'exiting_plugin': transform 'exits': spec() called sys.exit(3)")


def test_a_rule_set_loader_calling_sys_exit_is_the_plugins_error(run):
    _said(run("plan", "src.safetensors", "--rules", "exiting_plugin:exits"),
          "rule set 'exiting_plugin:exits': plugin 'exiting_plugin' called sys.exit() while loading it")


def test_a_model_factory_calling_sys_exit_is_the_plugins_error(run, tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    said = "plugin 'exiting_plugin': model 'exits' called sys.exit(3) while being built"
    _said(run("plan", "src.safetensors", "--rules", "r.yaml", "--target", "model:exits"), said)
    _said(run("suggest", "--source", "src.safetensors", "--target", "model:exits"), said)


def test_a_models_forward_calling_sys_exit_in_verify_is_the_plugins_error(run, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    save_file({f"lin.{k}": v for k, v in torch.nn.Linear(4, 4).state_dict().items()}, str(tmp_path / "net.safetensors"))
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    done = run("verify", "--rules", "r.yaml", "--source", "net.safetensors", "--source-model", "model:net",
               "--target-model", "model:exits_forward", "--input", "2x4")
    _said(done, "model:exits_forward called sys.exit(4) while running on the inputs [2, 4]")


@pytest.mark.parametrize("args, code, where", [
    (("plan", "--help"), 0, "stdout"),
    (("--version",), 0, "stdout"),
    (("plan", "src.safetensors", "--no-such-option"), 2, "stderr"),
])
def test_the_command_lines_own_exits_are_unchanged(run, args, code, where):
    done = run(*args)
    assert done.returncode == code
    assert ("usage: mapper" if args != ("--version",) else "mapper-core ") in getattr(done, where)
