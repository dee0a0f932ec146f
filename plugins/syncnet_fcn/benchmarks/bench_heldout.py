"""``sync`` on held-out clips with a trained run: does it find each clip's known offset?

    .venv/bin/python plugins/syncnet_fcn/benchmarks/bench_heldout.py RUN DATA [--model fcn] [--limit N]

Runs ``python -m syncnet_fcn sync CLIP --checkpoint RUN --json`` (in this process, the real
command's code) on every held-out clip of the ``make-data`` folder DATA and compares the
offset it prints with the manifest's. The training curves measure the same thing inside
``train``; this is the user's path: files in, offsets out.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path


def sync_offset(clip: Path, run: Path, model: str) -> int:
    from syncnet_fcn.sync import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(clip), "--checkpoint", str(run), "--model", model, "--json"])
    if code != 0:
        raise RuntimeError(f"sync {clip} exited {code}")
    return int(json.loads(out.getvalue())["offset"])


def run(run_folder: Path, data: Path, model: str = "fcn", limit: int | None = None) -> dict:
    manifest = json.loads((data / "manifest.json").read_text())
    clips = [c for c in manifest["clips"] if c["split"] == "heldout"][:limit]
    rows, started = [], time.perf_counter()
    for entry in clips:
        found = sync_offset(data / entry["file"], run_folder, model)
        rows.append({"file": entry["file"], "known": entry["offset"], "found": found})
        print(f"  {entry['file']}: known {entry['offset']:+3d}, sync says {found:+3d}"
              f"{'' if found == entry['offset'] else '  ✗'}", flush=True)
    exact = sum(r["known"] == r["found"] for r in rows)
    near = sum(abs(r["known"] - r["found"]) <= 1 for r in rows)
    print(f"sync --checkpoint {run_folder}: {exact}/{len(rows)} held-out clips exact, {near}/{len(rows)} "
          f"within ±1 frame (chance 1/{2 * manifest['max_offset'] + 1}); "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return {"run": str(run_folder), "clips": rows, "exact": exact, "within_1": near, "count": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a train --out folder")
    parser.add_argument("data", type=Path, help="the make-data folder it was trained on")
    parser.add_argument("--model", default="fcn")
    parser.add_argument("--limit", type=int, help="only the first N held-out clips")
    args = parser.parse_args(argv)
    run(args.run, args.data, args.model, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
