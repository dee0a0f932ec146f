"""Shared pieces of the SyncNet benchmarks: synthetic clips, a child process per measurement.

Each timed run happens in a fresh Python process so that its peak resident memory
(``ru_maxrss``) belongs to that run alone; the child reports JSON on its last stdout line.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_clip(path: Path, seconds: float, offset: int = 3, seed: int = 7) -> Path:
    """A synthetic talking-mouth clip of ``seconds`` (rendered once, then reused)."""
    from syncnet_fcn.synthetic import ClipSpec, render, write_video

    if not path.exists():
        started = time.perf_counter()
        write_video(path, *render(ClipSpec(round(seconds * 25), offset, seed)))
        print(f"  wrote {path} ({seconds:g} s) in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def child(script: str, *args: object, timeout: float = 3600) -> dict:
    """Run ``python benchmarks/<script> ARGS`` and return the JSON it printed last."""
    command = [sys.executable, str(HERE / script), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(result: dict) -> None:
    """The child's side: print the result as the last stdout line."""
    print(json.dumps(result), flush=True)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
