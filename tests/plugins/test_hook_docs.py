"""docs/plugins.md's hook reference documents every hook in hookspecs, with its signature, and no others."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from mapper_core.plugins import hookspecs
from mapper_core.plugins import get_plugin_manager

PLUGINS_DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hook_names() -> list[str]:
    pm = get_plugin_manager(entry_points=False, env={})
    return sorted(n for n in dir(hookspecs) if pm.parse_hookspec_opts(hookspecs, n) is not None)


def reference(text: str | None = None) -> dict[str, str]:
    """'### `hook`' heading → its text, inside the '## Hook reference' section."""
    text = PLUGINS_DOC.read_text(encoding="utf-8") if text is None else text
    match = re.search(r"^## Hook reference\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"{PLUGINS_DOC}: no '## Hook reference' section"
    parts = re.split(r"^### `?(\w+)`?\s*$", match.group(1), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_hookspecs_are_found():
    assert hook_names() == ["mapper_formats", "mapper_models", "mapper_rule_sets", "mapper_transforms"]


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_documented_with_its_signature_and_an_example(hook):
    docs = reference()
    assert hook in docs, f"{PLUGINS_DOC}: hook {hook} is missing from '## Hook reference'; add a '### `{hook}`' entry"
    returns = inspect.signature(getattr(hookspecs, hook)).return_annotation
    assert f"{hook}() -> {returns}" in docs[hook], f"{PLUGINS_DOC}: the signature of {hook} is missing or out of date"
    assert "@hookimpl" in docs[hook], f"{PLUGINS_DOC}: {hook} needs an example implementation"


def test_reference_documents_no_unknown_hook():
    assert sorted(reference()) == hook_names()


def test_a_hook_outside_the_reference_section_does_not_count():
    text = "## Hook reference\n### `mapper_models`\nx\n## Other\n### `mapper_formats`\ny\n"
    assert sorted(reference(text)) == ["mapper_models"]


def test_the_example_plugin_project_implements_every_hook():
    """docs/plugins.md's example project (its `# file:` blocks, which tests/test_docs.py writes and runs)
    shows each hook working, not only its reference entry."""
    text = PLUGINS_DOC.read_text(encoding="utf-8")
    block = re.search(r"^```python\n# file: my-plugin/mapper_demo_plugin/plugin\.py\n(.*?)^```", text, re.M | re.S)
    assert block, f"{PLUGINS_DOC}: the example project's plugin.py block is missing"
    for hook in hook_names():
        assert re.search(rf"@hookimpl\ndef {hook}\(", block.group(1)), f"the example plugin does not implement {hook}"
