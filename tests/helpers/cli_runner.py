"""The one way tests run the ``mapper`` command line.

``mapper(*args)`` calls ``mapper_core.cli.main(argv)`` in this process and returns a
:class:`subprocess.CompletedProcess` (``returncode``, ``stdout``, ``stderr``), as if the console
script had run: stdout and stderr captured, ``SystemExit`` from argparse turned into its
exit code, and each call isolated: the environment (``MAPPER_PLUGINS`` empty unless given),
the working directory, ``PYTHONPATH`` (put on ``sys.path`` for the call) and the plugin
modules the call imported are all put back or forgotten afterwards.

``mapper_process(*args)`` and ``python_process(code)`` start a real process, for the few tests
where the process is the subject: what a fresh interpreter imports, the installed console
script, signals. They take the same ``env``/``cwd`` arguments and build the environment
the same way.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping

SCRIPT = Path(sys.executable).with_name("mapper")
REPO = Path(__file__).resolve().parents[2]


def environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` with ``MAPPER_PLUGINS`` empty, then ``env``; its ``PYTHONPATH`` goes before the current one."""
    full = {**os.environ, "MAPPER_PLUGINS": ""}
    for key, value in (env or {}).items():
        if key == "PYTHONPATH":
            value = os.pathsep.join(filter(None, [value, os.environ.get("PYTHONPATH")]))
        full[key] = value
    return full


def mapper(*args: object, env: Mapping[str, str] | None = None,
           cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ``mapper ARGS`` in-process; the result reads like ``subprocess.run(..., capture_output=True, text=True)``."""
    from mapper_core.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    extra_paths = [p for p in (env or {}).get("PYTHONPATH", "").split(os.pathsep) if p]
    with _isolated(environment(env), cwd, extra_paths, _plugin_names(argv, env)):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: --help, --version, usage errors
                code = _exit_code(exc.code, err)
    return subprocess.CompletedProcess(["mapper", *argv], code, out.getvalue(), err.getvalue())


def mapper_process(*args: object, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                   check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed console script (``python -m mapper_core`` where there is none) in a new process."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "mapper_core"]
    return _run([*command, *map(str, args)], env, cwd, check)


def python_process(code: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                   check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -c CODE`` in a new interpreter (what a fresh process imports, for example)."""
    return _run([sys.executable, "-c", code], env, cwd, check)


def _run(argv: list[str], env: Mapping[str, str] | None, cwd: str | Path | None,
         check: bool) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, env=environment(env), cwd=cwd, timeout=300)
    if check:  # like subprocess.run(check=True), with the child's stderr in the message
        assert done.returncode == 0, f"{argv[:3]} exited {done.returncode}:\n{done.stderr}"
    return done


def _exit_code(code: object, err: io.StringIO) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    err.write(f"{code}\n")  # sys.exit("message") prints it and exits 1
    return 1


def _plugin_names(argv: list[str], env: Mapping[str, str] | None) -> set[str]:
    names = {n.strip() for n in (env or {}).get("MAPPER_PLUGINS", "").split(",") if n.strip()}
    names |= {value for option, value in zip(argv, argv[1:]) if option == "--plugin"}
    names |= {a.split("=", 1)[1] for a in argv if a.startswith("--plugin=")}
    return names


@contextlib.contextmanager
def _isolated(env: dict[str, str], cwd: str | Path | None, paths: list[str], plugins: set[str]) -> Iterator[None]:
    saved_env, saved_cwd, saved_path = dict(os.environ), os.getcwd(), list(sys.path)
    saved_modules = set(sys.modules)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = paths
    importlib.invalidate_caches()  # modules the test just wrote are found
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
        roots = [Path(p).resolve() for p in [*paths, *([cwd] if cwd is not None else [])]]
        # never forget the project's own modules (a second copy would have other classes)
        roots = [r for r in roots if not (REPO.is_relative_to(r) or r.is_relative_to(REPO))]
        for name in set(sys.modules) - saved_modules:
            if _is_plugin(name, plugins) or _lives_under(sys.modules[name], roots):
                del sys.modules[name]


def _is_plugin(name: str, plugins: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or p.startswith(name + ".") for p in plugins)


def _lives_under(module: object, roots: list[Path]) -> bool:
    file = getattr(module, "__file__", None)
    if not file or not roots:
        return False
    path = Path(file).resolve()
    return any(path.is_relative_to(root) for root in roots)
