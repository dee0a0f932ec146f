"""The plugin manager, the contributions registry, rule set names, and the plugins/rules commands."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mapper_core.errors import BadInputError, PluginError
from mapper_core.io.formats.base import Format
from mapper_core.plugins.hookspecs import hookimpl
from mapper_core.plugins import CLI, ENTRY_POINT, ENV, contributions, get_plugin_manager, resolve_rules
from mapper_core.plugins.registry import ModelFactory, RuleSetSource, TransformSpec
from cli_runner import python_process  # tests/helpers

RULES_YAML = textwrap.dedent(
    r"""
    version: 1
    name: tiny
    rules:
      - match: 'a\.(\d+)'
        target: 'b.{1}'
    """
)


@pytest.fixture
def pm():
    """A fresh manager per test, with entry-point loading off."""
    return get_plugin_manager(entry_points=False, env={})


GOOD_PLUGIN = """
    from mapper_core.plugins.hookspecs import hookimpl
    from mapper_core.plugins.registry import RuleSetSource

    @hookimpl
    def mapper_rule_sets():
        return [RuleSetSource("{name}", "from {name}", loader=lambda: None)]
"""


class RuleSetPlugin:
    """A test plugin contributing one rule set per name."""

    def __init__(self, *names: str, loader=None, path=None):
        self.names = names
        self.loader, self.path = loader, path

    @hookimpl
    def mapper_rule_sets(self):
        if self.path is not None:
            return [RuleSetSource(n, f"rules {n}", path=self.path) for n in self.names]
        return [RuleSetSource(n, f"rules {n}", loader=self.loader or (lambda: None)) for n in self.names]


class ModelPlugin:
    @hookimpl
    def mapper_models(self):
        return [ModelFactory("net", dict, "a stand-in builder")]


class FormatPlugin:
    def __init__(self, name: str):
        self.name = name

    @hookimpl
    def mapper_formats(self):
        return [Format(self.name, (f".{self.name}",), open=lambda path: None)]


class TransformPlugin:
    @hookimpl
    def mapper_transforms(self):
        return [TransformSpec("negate", lambda t: -t, "flip the sign")]


def registered(pm, plugin, name):
    """Register a test plugin by name; the caller unregisters it in `finally`."""
    pm.register(plugin, name=name)
    return plugin


# --- the manager ---------------------------------------------------------------------------------


def test_importing_the_plugin_modules_loads_no_plugin_and_no_torch():
    code = (
        "import sys, mapper_core.plugins, mapper_core.hookspecs, mapper_core.registry, syncnet_fcn.plugin\n"
        "print(sorted(m for m in ('torch', 'mapper_core.builtin', 'syncnet_fcn.models') if m in sys.modules))"
    )
    out = python_process(code, check=True).stdout
    assert out.strip() == "[]"


def test_builtin_formats_come_through_the_hook(pm):
    from mapper_core.io.formats import builtin_formats

    expected = [f.name for f in builtin_formats()]
    found = contributions(pm)
    assert expected and [f.name for f in found.formats] == expected
    assert set(found.format_plugins.values()) == {"mapper_core"}
    assert pm.mapper_plugin_info["mapper_core"].source == "builtin"


def test_plugin_formats_come_after_builtin_ones(pm):
    try:
        registered(pm, FormatPlugin("zzz"), "fmt")
        formats = contributions(pm).formats
        assert formats[-1].name == "zzz"
        assert contributions(pm).format_plugins["zzz"] == "fmt"
    finally:
        pm.unregister(name="fmt")


def test_modules_from_env_and_extra_plugins_are_registered_with_their_source(plugin_modules):
    a = plugin_modules("plug_env_a", GOOD_PLUGIN.format(name="ra"))
    b = plugin_modules("plug_cli_b", GOOD_PLUGIN.format(name="rb"))
    pm = get_plugin_manager([b, a], entry_points=False, env={"MAPPER_PLUGINS": f" {a} ,,"})
    assert pm.mapper_load_errors == []
    assert pm.mapper_plugin_info[a].source == ENV
    assert pm.mapper_plugin_info[b].source == CLI
    # a module named twice is registered once, under its first name
    assert [n for n, _ in pm.list_name_plugin()] == ["mapper_core", a, b]
    assert set(contributions(pm).rule_sets) == {f"{a}:ra", f"{b}:rb"}


def test_failing_plugin_is_reported_and_others_still_load(plugin_modules):
    broken = plugin_modules("plug_broken", "raise RuntimeError('boom at import')")
    good = plugin_modules("plug_good", GOOD_PLUGIN.format(name="ok"))
    pm = get_plugin_manager(["plug_missing_xyz"], entry_points=False, env={"MAPPER_PLUGINS": f"{broken},{good}"})
    assert pm.get_plugin(good) is not None
    assert "plug_good:ok" in contributions(pm).rule_sets
    failures = {f.name: f for f in pm.mapper_load_errors}
    assert set(failures) == {broken, "plug_missing_xyz"}
    assert failures[broken].error == "RuntimeError: boom at import"
    assert failures[broken].source == ENV
    assert failures["plug_missing_xyz"].error.startswith("ModuleNotFoundError")
    message = str(failures[broken])
    assert broken in message and "boom at import" in message and "MAPPER_PLUGINS" in message


def test_misspelt_hook_is_a_load_failure(plugin_modules):
    typo = plugin_modules("plug_typo", """
        from mapper_core.plugins.hookspecs import hookimpl

        @hookimpl
        def mapper_rulesets():
            return []
    """)
    pm = get_plugin_manager([typo], entry_points=False, env={})
    assert pm.get_plugin(typo) is None
    [failure] = pm.mapper_load_errors
    assert failure.name == typo and "mapper_rulesets" in failure.error
    pm.check_pending()  # the manager is left consistent


def test_failing_entry_point_does_not_take_the_others_down(tmp_path, monkeypatch, plugin_modules):
    good = plugin_modules("plug_ep_good", GOOD_PLUGIN.format(name="ep"))
    dist = tmp_path / "fake_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[mapper_core.plugins]\nbad = plug_ep_missing_xyz\ngood = {good}\n"
    )
    pm = get_plugin_manager(env={})
    info = pm.mapper_plugin_info["good"]
    assert (info.source, info.distribution, info.version, info.module) == (ENTRY_POINT, "fake-plugins", "1.0", good)
    assert [(f.name, f.source) for f in pm.mapper_load_errors] == [("bad", ENTRY_POINT)]
    # the installed SyncNet plugin came in through its entry point too
    assert pm.mapper_plugin_info["syncnet_fcn"].source == ENTRY_POINT
    assert "good:ep" in contributions(pm).rule_sets


def test_duplicate_format_names_name_both_plugins(pm):
    try:
        registered(pm, FormatPlugin("z"), "first_plugin")
        registered(pm, FormatPlugin("z"), "second_plugin")
        found = contributions(pm)
        [failure] = found.failures
        assert failure.plugin == "second_plugin"
        assert "format 'z'" in failure.error and "'first_plugin'" in failure.error and "'second_plugin'" in failure.error
        # the later plugin's clashing value is dropped; the first one's is kept
        assert "second_plugin" not in found.by_plugin() and "first_plugin" in found.by_plugin()
        [recorded] = pm.mapper_load_errors
        assert (recorded.name, recorded.hook) == ("second_plugin", failure.hook)
    finally:
        pm.unregister(name="first_plugin")
        pm.unregister(name="second_plugin")


@pytest.mark.parametrize(
    "make, field, name",
    [(lambda: RuleSetPlugin("x"), "rule_sets", "x"), (ModelPlugin, "models", "net"),
     (TransformPlugin, "transforms", "negate")],
)
def test_names_are_scoped_by_plugin(pm, make, field, name):
    try:
        registered(pm, make(), "first_plugin")
        registered(pm, make(), "second_plugin")
        found = contributions(pm)
        assert found.failures == ()
        table = getattr(found, field)
        assert table[f"first_plugin:{name}"].plugin == "first_plugin"
        assert table[f"second_plugin:{name}"].plugin == "second_plugin"
        assert name not in table  # a bare name only when unambiguous
        with pytest.raises(BadInputError, match=f"'{name}' is ambiguous.*first_plugin:{name}, second_plugin:{name}"):
            table.resolve(name)
    finally:
        pm.unregister(name="first_plugin")
        pm.unregister(name="second_plugin")
    registered(pm, make(), "only")
    try:
        assert getattr(contributions(pm), field)[name].plugin == "only"
    finally:
        pm.unregister(name="only")


def test_builtin_format_name_clash_names_the_builtin_plugin(pm):
    name = contributions(pm).formats[0].name
    try:
        registered(pm, FormatPlugin(name), "clash")
        found = contributions(pm)
        [failure] = found.failures
        assert failure.plugin == "clash" and f"format '{name}'" in failure.error
        assert "'mapper_core' and 'clash'" in failure.error
        assert found.format_plugins[name] == "mapper_core"
    finally:
        pm.unregister(name="clash")


def test_hook_returning_the_wrong_type_is_a_recorded_failure(pm):
    class Bad:
        @hookimpl
        def mapper_models(self):
            return ["not a factory"]

    try:
        registered(pm, Bad(), "bad_types")
        found = contributions(pm)
        assert [(f.plugin, f.hook) for f in found.failures] == [("bad_types", "mapper_models")]
        assert "expected ModelFactory" in found.failures[0].error
        assert found.models == {} and found.formats  # the rest is still there
        assert "'bad_types'" in str(pm.mapper_load_errors[0])
    finally:
        pm.unregister(name="bad_types")
    contributions(pm)
    assert pm.mapper_load_errors == []  # gone with the plugin


def test_contributions_are_cached_until_plugins_change(pm):
    first = contributions(pm)
    assert contributions(pm) is first
    try:
        registered(pm, TransformPlugin(), "tp")
        again = contributions(pm)
        assert again is not first and again.transforms["negate"].plugin == "tp"
    finally:
        pm.unregister(name="tp")
    assert "negate" not in contributions(pm).transforms


class BadEntriesPlugin:
    @hookimpl
    def mapper_rule_sets(self):
        return [RuleSetSource("a:b", loader=lambda: None), RuleSetSource("both", path="x.yaml", loader=lambda: None),
                RuleSetSource("neither"), RuleSetSource("fine", loader=lambda: None)]


def test_one_bad_entry_drops_only_that_entry(pm):
    registered(pm, BadEntriesPlugin(), "bad_entries")
    try:
        found = contributions(pm)
        assert list(found.rule_sets) == ["bad_entries:fine"]
        errors = [f.error for f in found.failures]
        assert len(errors) == 3 and all("only this rule set was left out" in e for e in errors)
        assert "without ':'" in errors[0] and "exactly one of path= or loader=" in errors[1] + errors[2]
    finally:
        pm.unregister(name="bad_entries")


# --- rule set names ------------------------------------------------------------------------------


def test_resolve_rules_reads_a_file_path(pm, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(RULES_YAML)
    rs = resolve_rules(str(path), pm)
    assert rs.name == "tiny" and len(rs.rules) == 1


def test_an_existing_file_wins_over_a_plugin_name(pm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("clash:x.yaml").write_text(RULES_YAML)
    try:
        registered(pm, RuleSetPlugin("x.yaml", loader=lambda: pytest.fail("the file should win")), "clash")
        assert resolve_rules("clash:x.yaml", pm).name == "tiny"
    finally:
        pm.unregister(name="clash")


def test_resolve_rules_by_plugin_name_and_bare_name(pm, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(RULES_YAML)
    try:
        registered(pm, RuleSetPlugin("mine", path=path), "tp")
        rs = resolve_rules("tp:mine", pm)
        assert rs.name == "tiny" and rs.origin == "tp:mine"
        assert resolve_rules("mine", pm).origin == "tp:mine"
    finally:
        pm.unregister(name="tp")


def test_unknown_rule_set_lists_the_known_ones(pm):
    try:
        registered(pm, RuleSetPlugin("mine"), "tp")
        with pytest.raises(BadInputError) as err:
            resolve_rules("tp:nope", pm)
        message = str(err.value)
        assert "'tp:nope'" in message and "tp:mine" in message and "mapper rules" in message
    finally:
        pm.unregister(name="tp")


def test_a_loader_returning_something_else_is_a_plugin_error(pm):
    try:
        registered(pm, RuleSetPlugin("odd", loader=lambda: {"rules": []}), "tp")
        with pytest.raises(PluginError, match="'tp:odd'.*expected a RuleSet"):
            resolve_rules("tp:odd", pm)
    finally:
        pm.unregister(name="tp")


# --- the commands ---------------------------------------------------------------------------------


def test_mapper_plugins_json(tmp_path, mapper):
    (tmp_path / "plug_cli_broken.py").write_text("raise ImportError('cannot work here')\n")
    (tmp_path / "plug_cli_good.py").write_text(textwrap.dedent(GOOD_PLUGIN.format(name="cli")))
    proc = mapper(
        "--plugin", "plug_cli_good", "plugins", "--json",
        env={"PYTHONPATH": str(tmp_path), "MAPPER_PLUGINS": "plug_cli_broken"}, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr  # a plugin failed to load
    report = json.loads(proc.stdout)
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["mapper_core"]["source"] == "builtin" and plugins["mapper_core"]["contributes"]["formats"]
    syncnet = plugins["syncnet_fcn"]
    assert (syncnet["source"], syncnet["module"], syncnet["distribution"]) == ("entry point", "syncnet_fcn.plugin", "syncnet-fcn")
    assert syncnet["contributes"]["rule_sets"] == ["syncnet_fcn:to-fcn", "syncnet_fcn:to-fcn-full"]
    assert syncnet["hooks"] == ["mapper_models", "mapper_rule_sets"]
    assert plugins["plug_cli_good"]["source"] == "--plugin"
    [failure] = report["failures"]
    assert "ImportError: cannot work here" in failure.pop("traceback")
    assert failure == {
        "name": "plug_cli_broken", "source": "MAPPER_PLUGINS", "module": "plug_cli_broken",
        "error": "ImportError: cannot work here",
    }
    assert report["hook_failures"] == []
    assert "plug_cli_broken" in proc.stderr  # also warned about


def test_mapper_plugins_text_lists_what_each_plugin_contributes(mapper):
    proc = mapper("plugins")
    assert proc.returncode == 0, proc.stderr
    assert "syncnet_fcn  (entry point; module syncnet_fcn.plugin)" in proc.stdout
    assert "rule sets: syncnet_fcn:to-fcn" in proc.stdout


def test_mapper_rules_json(mapper):
    proc = mapper("rules", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["rule_sets"]}
    row = rows["syncnet_fcn:to-fcn"]
    assert row["plugin"] == "syncnet_fcn" and row["description"]
    assert Path(row["origin"]).name == "to-fcn.yaml" and Path(row["origin"]).is_file()


def test_validate_accepts_a_plugin_rule_set_name(mapper):
    proc = mapper("validate", "syncnet_fcn:to-fcn", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid"] is True
