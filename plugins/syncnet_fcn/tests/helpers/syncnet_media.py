"""Tiny real video files for the sub-command tests, and an in-process ``python -m syncnet_fcn``."""
from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

from syncnet_fcn.synthetic import ClipSpec, render, write_video


def tiny_clip(path: Path, frames: int = 12, offset: int = 1, seed: int = 0, audio: bool = True) -> Path:
    """A synthetic talking-mouth clip of ``frames`` frames (audio codec by extension)."""
    video, samples = render(ClipSpec(frames, offset, seed))
    return write_video(path, video, samples if audio else None)


def syncnet(*args: object) -> subprocess.CompletedProcess:
    """Run ``python -m syncnet_fcn ARGS`` in this process; stdout, stderr and the exit code
    come back as from a process (argparse's SystemExit becomes the exit code)."""
    from syncnet_fcn.main import main

    out, err = io.StringIO(), io.StringIO()
    argv = [str(a) for a in args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
