"""The commonest plugin-authoring slips are reported, not silently ignored: a hook without @hookimpl,
and an entry point that names a function instead of the module."""
from __future__ import annotations

import json

from mapper_core.plugins import contributions, get_plugin_manager

UNMARKED = """
    from mapper_core.plugins import RuleSetSource, hookimpl
    from json import loads as mapper_imported_helper  # someone else's function: not this plugin's business

    def mapper_rule_sets():  # forgot @hookimpl
        return [RuleSetSource("forgotten", "never seen", loader=lambda: None)]

    def mapper_rulesets():  # misspelt and unmarked
        return []

    @hookimpl
    def mapper_transforms():
        return []
"""


def test_a_hook_function_without_hookimpl_is_reported_and_the_rest_of_the_plugin_loads(plugin_modules):
    module = plugin_modules("plug_unmarked", UNMARKED)
    pm = get_plugin_manager([module], entry_points=False, env={})
    assert pm.get_plugin(module) is not None  # loaded: its marked hook still counts
    contributions(pm)  # collecting the hooks again keeps the report
    failures = {f.hook: f.error for f in pm.mapper_load_errors}
    assert set(failures) == {"mapper_rule_sets", "mapper_rulesets"}
    assert failures["mapper_rule_sets"] == (
        f"function mapper_rule_sets in {module} is not marked @hookimpl, so it is not a hook and contributes "
        "nothing; decorate it with @hookimpl (from mapper_core.plugins import hookimpl)")
    assert "mapper_rulesets is not a hook name either (hooks: mapper_formats, mapper_models, mapper_rule_sets, " \
           "mapper_transforms)" in failures["mapper_rulesets"]


def test_mapper_plugins_exits_2_and_other_commands_warn(plugin_modules, mapper):
    module = plugin_modules("plug_unmarked_cli", UNMARKED)
    proc = mapper("--plugin", module, "plugins")
    assert proc.returncode == 2
    assert f"{module}  (mapper_rule_sets): function mapper_rule_sets in {module} is not marked @hookimpl" in proc.stdout
    proc = mapper("--plugin", module, "plugins", "--json")
    hooks = {f["hook"] for f in json.loads(proc.stdout)["hook_failures"] if f["name"] == module}
    assert hooks == {"mapper_rule_sets", "mapper_rulesets"}
    proc = mapper("--plugin", module, "rules")
    assert proc.returncode == 0
    assert f"mapper: warning: plugin '{module}' (--plugin): function mapper_rule_sets in {module} is not marked " \
           "@hookimpl" in proc.stderr


def test_an_entry_point_naming_a_function_is_a_load_failure(plugin_modules, tmp_path, mapper):
    module = plugin_modules("plug_ep_target", """
        from mapper_core.plugins import hookimpl

        @hookimpl
        def mapper_rule_sets():
            return []

        def make():
            return None
    """)
    dist = tmp_path / "slip_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slip-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[mapper_core.plugins]\nfn = {module}:mapper_rule_sets\n"
                                           f"helper = {module}:make\n")
    pm = get_plugin_manager(env={})
    assert pm.get_plugin("fn") is None and pm.get_plugin("helper") is None
    failures = {f.name: f.error for f in pm.mapper_load_errors if f.name in ("fn", "helper")}
    assert failures["fn"] == (
        f"the entry point 'fn = {module}:mapper_rule_sets' names a function, not a module, and it has no mapper_* "
        "hook implementations, so it would contribute nothing; name the module that holds the @hookimpl functions "
        f"(fn = {module} in the package's [project.entry-points.\"mapper_core.plugins\"] table)")
    assert "names a function" in failures["helper"]
    proc = mapper("plugins")
    assert proc.returncode == 2
    assert f"fn  (entry point): the entry point 'fn = {module}:mapper_rule_sets' names a function" in proc.stdout
