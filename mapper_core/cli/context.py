"""What every command needs: output streams, the plugin manager (built lazily), rules and readers."""
from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from ..text import inert

PLUGINS_ENV = "MAPPER_PLUGINS"  # plugins.manager.ENV_VAR, spelled here so that format_for imports no pluggy


class Context:
    def __init__(self, plugins: Sequence[str] = (), out: IO[str] | None = None, err: IO[str] | None = None,
                 json_indent: int | None = None, debug: bool = False):
        self.plugins = tuple(plugins)
        self.json_indent = json_indent
        self.debug = debug
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        # How the command's torch source was read (cli.plan.source_reading): its header and hints say it
        self.source_reading: dict = {}
        self.tied_targets: list[tuple[str, ...]] = []  # the --target model's tied names (model_target)
        self.tied_model = ""

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def print_json(self, value: Any) -> None:
        # One string from the C encoder and one write: json.dump with indent= goes through the
        # pure-Python encoder and issues a write per token (3.4 million for a 100k-key plan).
        if self.json_indent is None:
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = json.dumps(value, indent=self.json_indent)
        self.out.write(text + "\n")

    def error(self, message: str) -> None:
        self.err.write(f"mapper: error: {inert(message)}\n")

    def warn(self, message: str) -> None:
        self.err.write(f"mapper: warning: {inert(message)}\n")

    def traceback(self, exc: BaseException | str) -> None:
        """Under --debug (or $MAPPER_DEBUG=1): a plugin's traceback, after the one-line message."""
        if not self.debug:
            return
        import traceback

        text = exc if isinstance(exc, str) else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if text:
            self.err.write("mapper: debug: traceback:\n" + text.rstrip("\n") + "\n")

    @cached_property
    def plugin_manager(self):
        from ..plugins import contributions, get_plugin_manager

        pm = get_plugin_manager(extra_plugins=self.plugins)
        contributions(pm)  # call the hooks now, so a failing one is warned about below
        for failure in pm.mapper_load_errors:
            self.warn(str(failure))
            self.traceback(failure.traceback)
        return pm

    def formats(self):
        from ..plugins import contributions

        return contributions(self.plugin_manager).formats

    def load_rules(self, spec: str):
        """A rules file path, or ``plugin:name`` for a rule set a plugin contributes."""
        if Path(spec).is_file():  # no plugin start-up cost for a plain file
            from ..rules.load import load_rules
            from ..rules.transforms import LazyTransforms

            # Plugins start only if a `transform:` step names a non-built-in transform.
            return load_rules(spec, transforms=LazyTransforms(self._plugin_transforms))
        from ..plugins import resolve_rules

        return resolve_rules(spec, self.plugin_manager)

    def _plugin_transforms(self):
        from ..plugins import contributions

        return contributions(self.plugin_manager).transforms

    def model_target(self, name: str, kwargs: dict):
        """(specs, module types) of a model a plugin contributes, built with ``kwargs`` (imports torch);
        built on the meta device when it can be, so that a plan costs no memory for the model."""
        from ..train.apply import module_specs, module_ties, module_types

        module = self.build_model(name, kwargs, meta=True)[0]
        # tied weights (one tensor, several state-dict names; buffers too): for the plan, as plan_for_module has them
        self.tied_targets = module_ties(module)
        self.tied_model = f"model:{name}"
        return module_specs(module), module_types(module)

    def build_model(self, name: str, kwargs: dict, meta: bool = False):
        """(module, its ModelFactory) for a model a plugin contributes, built with ``kwargs``; with
        ``meta``, on the meta device if the model can be built there (its specs only are needed)."""
        from ..errors import BadInputError, PluginError, called_exit
        from ..plugins import contributions

        found = contributions(self.plugin_manager).models.resolve(
            name, "`mapper plugins` lists what plugins contribute; write model:NAME or model:PLUGIN:NAME")
        try:
            module = _built(found.value, kwargs, meta)
        except TypeError as exc:
            raise BadInputError(f"model '{found.qualified}' cannot be built with {_described(kwargs)}: {exc}; "
                                f"{_expected(found.value, kwargs)}") from None
        except Exception as exc:  # the plugin's own code
            raise PluginError(f"plugin '{found.plugin}': model '{found.name}' failed to build"
                              + (f" with {_described(kwargs)}" if kwargs else "")
                              + f": {type(exc).__name__}: {exc}") from exc
        except SystemExit as exc:  # the plugin's failure, not the command's exit; KeyboardInterrupt still stops us
            raise PluginError(f"plugin '{found.plugin}': model '{found.name}' "
                              f"{called_exit(exc, 'while being built')}") from exc
        nn = sys.modules.get("torch.nn")  # an nn.Module exists only once torch.nn is imported
        if nn is None or not isinstance(module, nn.Module):
            raise PluginError(f"plugin '{found.plugin}': model '{found.name}' returned a value of type "
                              f"{type(module).__name__}, not a torch.nn.Module; its ModelFactory's build must "
                              "return the model")
        return module, found.value

    def format_for(self, path: str | Path, format_name: str | None = None):
        """The format named ``format_name``, else the one that recognises ``path``.

        Built-in formats come first in every registry and cannot be renamed by a plugin, so a
        built-in name, or a file a built-in sniffer recognises, gets the same answer without
        starting installed plugins (a format plugin may import numpy or more: start-up time).
        Plugins asked for by name (``--plugin``, ``$MAPPER_PLUGINS``) still start, and say if they fail."""
        from ..errors import BadInputError, CheckpointError
        from ..io.formats import builtin_formats
        from ..io.formats.base import choose_format

        if isinstance(path, str) and not path.strip():  # an unset shell variable: Path("") is the current folder
            raise BadInputError(blank_path(path))
        if self.plugins or os.environ.get(PLUGINS_ENV, "").strip():
            return choose_format(path, self.formats(), format_name)
        builtins = builtin_formats()
        if format_name is not None and any(f.name == format_name for f in builtins):
            return choose_format(path, builtins, format_name)
        if format_name is None and Path(path).exists():
            for f in builtins:
                if f.sniff is not None and f.sniff(Path(path)):
                    return f
            if Path(path).is_dir():  # a model folder: plugins start only when no built-in format's file is in it
                try:
                    return choose_format(path, builtins)
                except CheckpointError:
                    pass
        return choose_format(path, self.formats(), format_name)

    def open_reader(self, path: str | Path, format_name: str | None = None, *, source: bool = False,
                    target: bool = False, **options):
        """Every command opens checkpoints here.

        ``source`` (``target``): ``path`` is the one checkpoint the reader options (the --target-...
        options) were given for, so an option that renames keys (``unwrap``, ``strip_prefix``) its
        format does not take is refused instead of being ignored (the library ignores other formats' options)."""
        fmt = self.format_for(path, format_name)
        if source or target:
            refuse_foreign_options(path, fmt, options, _TARGET_KEY_OPTIONS if target else _KEY_OPTIONS)
        return fmt.open(Path(path), **options)

    @contextmanager
    def command_warnings(self) -> Iterator[None]:
        """While a command runs, every warning Python's filters let through is printed as ``mapper:
        warning: ...``, whichever phase raised it (a plugin's hook while plugins load, a reader outside
        a ``with`` block), never in Python's ``file.py:123: Category: ...`` form. The library's
        own (a CheckpointWarning, a plugin reader's included, or one raised in mapper_core's code)
        show their message alone, a CheckpointWarning each time it is raised; another library's show
        their category and where they came from."""
        from ..errors import CheckpointWarning

        ours = str(Path(__file__).resolve().parents[1]) + os.sep  # the mapper_core package

        with warnings.catch_warnings():  # puts the filters and showwarning back afterwards
            def show(message, category, filename, lineno, file=None, line=None):
                if (issubclass(category, CheckpointWarning) or category.__module__.startswith("mapper_core.")
                        or str(filename).startswith(ours)):
                    self.warn(str(message))
                else:
                    self.warn(f"{message} ({category.__name__} from {filename}:{lineno})")
                self.err.flush()

            warnings.showwarning = show
            warnings.simplefilter("always", CheckpointWarning)
            yield


@contextmanager
def report_stream(given: IO[str] | None) -> Iterator[IO[str]]:
    """The stream the command's report goes to: ``given``, else stdout. Where that writes to what file
    descriptor 1 does, it is a new stream on a copy of that descriptor, and fd 1 itself points at
    stderr until the command ends, when everything is put back (``main`` may be called in-process).

    Plugin code runs in this process, and redirect_stdout catches only its ``print``: a write to
    fd 1 (``os.write(1, ...)``, a C library's printf, ``sys.__stdout__``) would land in the report,
    and ``--json`` output would no longer be one JSON document."""
    stream = sys.stdout if given is None else given
    if not _writes_to_fd1(stream):  # a StringIO, a file of the caller's, no stdout at all
        yield stream
        return
    _flush(stream)  # what was written before the command comes before its report
    _flush(sys.__stdout__)
    copy = os.dup(stream.fileno())
    try:
        out = open(copy, "w", buffering=1 if getattr(stream, "line_buffering", False) else -1,  # 1: a terminal's
                   encoding=getattr(stream, "encoding", None) or "utf-8", errors=getattr(stream, "errors", None))
    except BaseException:
        os.close(copy)
        raise
    if getattr(stream, "write_through", False):  # python -u, $PYTHONUNBUFFERED
        out.reconfigure(write_through=True)
    fd1 = os.dup(1)
    try:
        _point_fd1_at_stderr()
        yield out
    finally:
        try:
            # Plugin text still buffered goes where fd 1 points now, stderr: Python's, and a C library's
            # printf (C stdio holds a pipe's output until exit, which would be after the report).
            _flush(sys.__stdout__)
            _flush_c_stdio()
            try:
                out.close()
            except OSError:  # the reader went away (`| head -1`, told in main): what was left is dropped
                pass
        finally:
            os.dup2(fd1, 1)
            os.close(fd1)


def _writes_to_fd1(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and os.path.sameopenfile(stream.fileno(), 1)
    except (AttributeError, ValueError, OSError):  # no descriptor (io.UnsupportedOperation), closed, no fd 1
        return False


def _point_fd1_at_stderr() -> None:
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr (fd 2 closed): what plugin code writes to fd 1 goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


def _flush_c_stdio() -> None:
    # Only once code not ours has been loaded (a plugin, torch): ctypes costs a header-only command
    # 4 ms of start-up, and there is no C stdio output to flush without it.
    if not ("pluggy" in sys.modules or "torch" in sys.modules):
        return
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)  # fflush(NULL): every C output stream
    except (ImportError, OSError, AttributeError, TypeError):  # no C library to ask (Windows: CDLL(None))
        pass


def _flush(stream: IO[str] | None) -> None:
    try:
        if stream is not None:
            stream.flush()
    except (OSError, ValueError):  # a closed stream, a broken pipe: nothing to keep
        pass


_KEY_OPTIONS = {"unwrap": "--unwrap", "strip_prefix": "--strip-prefix"}  # options that change the keys read
_TARGET_KEY_OPTIONS = {"unwrap": "--target-unwrap", "strip_prefix": "--target-strip-prefix"}


def blank_path(path: str) -> str:
    """The refusal of an empty or blank checkpoint path (SRC, --source, --target): an unset shell
    variable, never "the current folder" (Path("")) nor "no target"."""
    return (f"a checkpoint path is {'empty' if not path else f'blank ({path!r})'}; give the checkpoint's path "
            "(. for the model folder you are in)")


def refuse_foreign_options(path: str | Path, fmt, options: dict, flags: dict[str, str] = _KEY_OPTIONS) -> None:
    """A key-changing reader option given for a checkpoint whose format does not take it: an error,
    not the silent no-op that would plan other keys than the user asked for."""
    from ..errors import BadInputError

    for name, flag in flags.items():
        if name in options and name not in fmt.options:
            where = ("the rules' templates" if flags is _TARGET_KEY_OPTIONS else "the rules' patterns")
            raise BadInputError(f"{path}: {flag} applies to torch checkpoints; this is a {fmt.name} checkpoint, whose "
                                f"keys are read as stored. Drop {flag} and write the keys in {where} as "
                                "`mapper inspect` lists them (a shared prefix included), or write a copy without it "
                                "first")


def _built(factory, kwargs: dict, meta: bool):
    """``factory.build(**kwargs)``; with ``meta`` first on the meta device (nothing allocated, whatever
    the arguments say), and as usual when the model cannot be built there (its error is the real one).
    The meta attempt's warnings are held back, and shown only if it succeeds, so none is said twice."""
    if meta:
        import torch

        with warnings.catch_warnings(record=True) as held:
            warnings.simplefilter("always")
            try:
                with torch.device("meta"):
                    module = factory.build(**kwargs)
            except Exception:
                module = None
        if module is not None:
            for w in held:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            return module
    return factory.build(**kwargs)


def _described(kwargs: dict) -> str:
    """``embedding_dim='abc' (a str)``: each argument with the type it was given as."""
    return ", ".join(f"{k}={v!r:.80} (a {type(v).__name__})" for k, v in kwargs.items()) or "no arguments"


def _expected(factory, kwargs: dict) -> str:
    """What to check: the model's own description, and how a text value came to be one."""
    described = f"the model is {factory.description}" if factory.description else "see `mapper plugins`"
    text = [k for k, v in kwargs.items() if isinstance(v, str)]
    return (f"check the model arguments ({described})" + (
        f"; model arguments are read as JSON (512, 0.5, true, \"name\"): {', '.join(text)} was given as text"
        if text else ""))
