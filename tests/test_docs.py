"""The examples in README.md and docs/*.md run, so an example that fails fails the suite.

Conventions for fenced blocks (one namespace and one temporary working directory per file;
blocks run in file order, so later blocks use earlier blocks' names and files):

- ```python: executed.
- A block of any language whose first line is ``# file: NAME`` (or ``// file: NAME``) is
  written to NAME, without that line, instead of being run.
- ```console: every line starting with ``$ mapper`` is run in-process as
  ``mapper_core.cli.main(shlex.split(line)[1:])``, optionally after ``VAR=value`` settings
  (``$ MAPPER_PLUGINS=demo mapper rules``; ``PYTHONPATH=DIR`` also puts DIR on sys.path,
  as it would for a new process). It must exit 0, or the code a trailing
  ``# exit N`` names. The other lines, up to the next ``$``, are output: each one shown must
  appear among the lines the command printed (stdout and stderr), in the same order;
  lines may be left out, and a line ``...`` only says so.
- ```bash, ```text, ```yaml without a ``# file:`` line, ... are shown, never run.
- ```LANG no-run: REASON (for python and console) is shown, not run; REASON is required.
  Use it only for what cannot run here (a real 52 MB checkpoint, a network).

Importing a 0.1 module path (``mapper_core.planner``...) fails an example: the docs use the
current paths. Relative links between the pages must name existing files and headings.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_NOT_RUN = 6  # blocks that cannot run here must stay few
SLOW = {"syncnet.md"}  # builds, converts and exports a 52 MB SyncNet checkpoint

FENCE = re.compile(r"^```(\w*)[ \t]*(.*)$")
FILE_LINE = re.compile(r"^(?:#|//) file: (\S+)\s*$")
EXIT = re.compile(r"\s#\s*exit\s+(\d+)\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    info: str  # what follows the language on the fence line
    body: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def not_run(self) -> bool:
        return self.info.startswith("no-run")


def blocks(path: Path) -> list[Block]:
    found, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
        assert end is not None, f"{path.relative_to(ROOT)}:{i + 1}: unclosed code block"
        found.append(Block(path, i + 1, opening.group(1), opening.group(2).strip(), "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return found


def run_console(block: Block, env: pytest.MonkeyPatch) -> None:
    from mapper_core.cli import main

    commands: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line.rstrip())
    assert commands, f"{block.where}: a console block without a '$ mapper' line; use ```text for output alone"
    for command, shown in commands:
        expected = EXIT.search(command)
        words = shlex.split(command, comments=True)
        while words and ASSIGNMENT.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            env.setenv(name, value)
            if name == "PYTHONPATH":  # what it does for a new process, done for this one
                for entry in reversed(value.split(os.pathsep)):
                    env.syspath_prepend(str(Path(entry).resolve()))
        assert words[:1] == ["mapper"], f"{block.where}: only `$ mapper ...` runs here; mark other commands no-run or use ```bash"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(words[1:])
            except SystemExit as exc:  # argparse: usage errors and --version
                code = exc.code if isinstance(exc.code, int) else 2
        printed = out.getvalue() + err.getvalue()
        want = int(expected.group(1)) if expected else 0
        assert code == want, f"{block.where}: `{command}` exited {code}, the block expects {want}\n{printed}"
        missing = _not_shown(shown, printed.splitlines())
        assert missing is None, (f"{block.where}: `{command}` did not print the line {missing!r} "
                                 f"(in this order); it printed:\n{printed}")


def _not_shown(shown: list[str], printed: list[str]) -> str | None:
    """The first shown line not found, in order, among the printed lines; None if all are."""
    rest = iter(line.rstrip() for line in printed)
    for line in shown:
        if line.strip() in ("", "..."):
            continue
        if not any(line == candidate for candidate in rest):
            return line
    return None


def _doc_params() -> list:
    return [pytest.param(p, id=str(p.relative_to(ROOT)), marks=[pytest.mark.slow] if p.name in SLOW else [])
            for p in DOCS]


@pytest.fixture
def same_sys_path():
    """sys.path as it was, after the test and after monkeypatch's own undo (set up first, torn down
    last): an example may put a folder on it ("." in docs/suggest-verify.md), later tests must not see it."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.mark.needs_torch  # the examples use torch (mapper-core[torch])
@pytest.mark.parametrize("path", _doc_params())
def test_examples_run(path: Path, tmp_path: Path, same_sys_path: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_example__"}
    imported = set(sys.modules)
    try:
        with warnings.catch_warnings():
            # The docs use the current module paths, never the 0.1 ones kept for one release.
            warnings.filterwarnings("error", message=r".* moved to mapper_core\.", category=DeprecationWarning)
            for block in blocks(path):
                run_block(block, namespace, tmp_path, monkeypatch)
    finally:  # forget modules the examples wrote and imported (e.g. a plugin)
        for name in set(sys.modules) - imported:
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
                del sys.modules[name]


def run_block(block: Block, namespace: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = FILE_LINE.match(block.body.split("\n", 1)[0])
    if block.not_run:
        return
    if named:
        target = tmp_path / named.group(1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.body.split("\n", 1)[1], encoding="utf-8")
    elif block.lang == "python":
        exec(compile(block.body, block.where, "exec"), namespace)  # noqa: S102 - our own docs
    elif block.lang == "console":
        run_console(block, monkeypatch)


def test_blocks_not_run_say_why_and_are_few() -> None:
    marked = [b for path in DOCS for b in blocks(path) if b.not_run]
    for b in marked:
        assert re.fullmatch(r"no-run:\s*\S.*", b.info), f"{b.where}: write the reason: ```{b.lang} no-run: REASON"
        assert b.lang in ("python", "console"), f"{b.where}: only python and console blocks run; drop no-run"
    assert len(marked) <= MAX_NOT_RUN, "too many examples not run: " + ", ".join(b.where for b in marked)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # no headings inside code
    return {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        file, _, anchor = link.partition("#")
        target = (path.parent / file).resolve() if file else path
        assert target.exists(), f"{path.relative_to(ROOT)}: link to {link}: no such file"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{path.relative_to(ROOT)}: link to {link}: no such heading"


def test_the_conventions_themselves(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n```python no-run: needs a network\nx = 1\n```\n```yaml\n# file: r.yaml\nversion: 1\n```\n")
    found = blocks(page)
    assert [(b.line, b.lang, b.not_run) for b in found] == [(2, "python", True), (5, "yaml", False)]
    assert FILE_LINE.match(found[1].body.splitlines()[0]).group(1) == "r.yaml"
    assert EXIT.search("mapper plan x --strict  # exit 1").group(1) == "1"
    assert _not_shown(["a", "...", "c"], ["a", "b", "c"]) is None
    assert _not_shown(["c", "a"], ["a", "b", "c"]) == "a"
    assert _anchor("Converting: `mapper convert`") == "converting-mapper-convert"
