"""One misbehaving plugin is reported and left out; the other plugins and the commands keep working."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from mapper_core.plugins import contributions, get_plugin_manager

GOOD = """
    from mapper_core.plugins.hookspecs import hookimpl
    from mapper_core.plugins.registry import RuleSetSource, TransformSpec

    @hookimpl
    def mapper_rule_sets():
        return [RuleSetSource("{name}", "from {name}", loader=lambda: None)]

    @hookimpl
    def mapper_transforms():
        return [TransformSpec("t_{name}", lambda t: t)]
"""

# Its transforms hook is fine; only the rule-set hook raises.
BAD_HOOK = """
    from mapper_core.plugins.hookspecs import hookimpl
    from mapper_core.plugins.registry import TransformSpec

    @hookimpl
    def mapper_rule_sets():
        raise RuntimeError("boom in the hook")

    @hookimpl
    def mapper_transforms():
        return [TransformSpec("t_bad", lambda t: t)]
"""


# --- the library ---------------------------------------------------------------------------------


def test_a_raising_hook_drops_only_that_plugins_values_for_that_hook(plugin_modules):
    bad = plugin_modules("plugf_bad", BAD_HOOK)
    good = plugin_modules("plugf_good", GOOD.format(name="ok"))
    pm = get_plugin_manager(entry_points=False, env={"MAPPER_PLUGINS": f"{bad},{good}"})
    found = contributions(pm)
    assert set(found.rule_sets) == {f"{good}:ok"}
    assert {f"{good}:t_ok", f"{bad}:t_bad"} <= set(found.transforms)  # the bad plugin's other hook still counts
    [failure] = pm.mapper_load_errors
    assert (failure.name, failure.hook, failure.source) == (bad, "mapper_rule_sets", "MAPPER_PLUGINS")
    message = str(failure)
    assert bad in message and "RuntimeError: boom in the hook" in message and "rule sets were left out" in message


def test_a_hook_calling_sys_exit_is_a_failure_too(plugin_modules):
    quitter = plugin_modules("plugf_hook_exit", """
        import sys
        from mapper_core.plugins.hookspecs import hookimpl

        @hookimpl
        def mapper_models():
            sys.exit(4)
    """)
    pm = get_plugin_manager([quitter], entry_points=False, env={})
    assert contributions(pm).formats  # still collected
    [failure] = pm.mapper_load_errors
    assert failure.name == quitter and "SystemExit" in failure.error


def test_sys_exit_at_import_is_a_load_failure(plugin_modules):
    quitter = plugin_modules("plugf_exit", "import sys\nsys.exit(3)\n")
    good = plugin_modules("plugf_good2", GOOD.format(name="fine"))
    pm = get_plugin_manager([quitter, good], entry_points=False, env={})
    [failure] = pm.mapper_load_errors
    assert (failure.name, failure.source, failure.hook) == (quitter, "--plugin", None)
    assert "sys.exit(3)" in failure.error
    assert f"{good}:fine" in contributions(pm).rule_sets


def test_keyboard_interrupt_at_import_is_not_swallowed(plugin_modules):
    stopper = plugin_modules("plugf_interrupt", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        get_plugin_manager([stopper], entry_points=False, env={})


# --- the commands --------------------------------------------------------------------------------


def plugin_env(project: Path, plugins: str) -> dict[str, str]:
    """MAPPER_PLUGINS set, and the plugin modules written into ``project`` importable."""
    return {"MAPPER_PLUGINS": plugins, "PYTHONPATH": str(project)}


@pytest.fixture
def project(tmp_path):
    """Plugin modules and a small checkpoint in one directory, used as cwd and PYTHONPATH."""
    (tmp_path / "plugf_cli_bad.py").write_text(textwrap.dedent(BAD_HOOK))
    (tmp_path / "plugf_cli_good.py").write_text(textwrap.dedent(GOOD.format(name="cli")))
    (tmp_path / "plugf_cli_dup.py").write_text(textwrap.dedent(GOOD.format(name="cli")))
    (tmp_path / "plugf_cli_exit.py").write_text("import sys\nsys.exit(3)\n")
    save_file({"enc.weight": np.zeros((2, 3), dtype=np.float32)}, str(tmp_path / "small.safetensors"))
    return tmp_path


def test_inspect_and_rules_warn_about_a_raising_hook_and_still_work(project, mapper):
    plugins = "plugf_cli_bad,plugf_cli_good"
    proc = mapper("inspect", "small.safetensors", env=plugin_env(project, plugins), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "enc.weight" in proc.stdout
    assert "mapper: warning: plugin 'plugf_cli_bad'" in proc.stderr and "boom in the hook" in proc.stderr

    proc = mapper("rules", "--json", env=plugin_env(project, plugins), cwd=project)
    assert proc.returncode == 0, proc.stderr
    names = {r["name"] for r in json.loads(proc.stdout)["rule_sets"]}
    assert "plugf_cli_good:cli" in names and "syncnet_fcn:to-fcn" in names
    assert "mapper: warning:" in proc.stderr and "plugf_cli_bad" in proc.stderr


def test_mapper_plugins_exits_2_naming_the_raising_hook(project, mapper):
    proc = mapper("plugins", "--json", env=plugin_env(project, "plugf_cli_bad,plugf_cli_good"), cwd=project)
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    assert report["failures"] == []  # it loaded; one of its hooks failed
    [failure] = report["hook_failures"]
    assert failure["name"] == "plugf_cli_bad" and failure["hook"] == "mapper_rule_sets"
    assert "boom in the hook" in failure["error"] and "RuntimeError" in failure["traceback"]
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["plugf_cli_good"]["contributes"]["rule_sets"] == ["plugf_cli_good:cli"]
    assert plugins["plugf_cli_bad"]["contributes"]["transforms"] == ["t_bad"]


def test_two_plugins_may_use_one_name_and_a_bare_name_then_lists_the_candidates(project, mapper):
    plugins = "plugf_cli_good,plugf_cli_dup"
    proc = mapper("plugins", env=plugin_env(project, plugins), cwd=project)
    assert proc.returncode == 0, proc.stdout
    assert "plugf_cli_good:cli" in proc.stdout and "plugf_cli_dup:cli" in proc.stdout

    proc = mapper("validate", "cli", env=plugin_env(project, plugins), cwd=project)
    assert proc.returncode == 2
    assert "'cli' is ambiguous" in proc.stderr and "plugf_cli_good:cli, plugf_cli_dup:cli" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = mapper("validate", "syncnet_fcn:to-fcn", "--json", env=plugin_env(project, plugins), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid"] is True


def test_debug_prints_the_failing_hooks_traceback(project, mapper):
    env = plugin_env(project, "plugf_cli_bad")
    proc = mapper("rules", env=env, cwd=project)
    assert "boom in the hook" in proc.stderr and "Traceback" not in proc.stderr
    proc = mapper("--debug", "rules", env=env, cwd=project)
    assert "Traceback (most recent call last)" in proc.stderr and 'raise RuntimeError("boom in the hook")' in proc.stderr
    proc = mapper("rules", env={**env, "MAPPER_DEBUG": "1"}, cwd=project)
    assert "Traceback (most recent call last)" in proc.stderr


def test_sys_exit_at_import_does_not_end_the_cli(project, mapper):
    proc = mapper("inspect", "small.safetensors", env=plugin_env(project, "plugf_cli_exit"), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "plugf_cli_exit" in proc.stderr and "sys.exit(3)" in proc.stderr

    proc = mapper("plugins", env=plugin_env(project, "plugf_cli_exit"), cwd=project)
    assert proc.returncode == 2 and "plugf_cli_exit" in proc.stdout
