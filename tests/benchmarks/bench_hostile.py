"""Hostile torch files: peak RSS of ``mapper convert`` on memory bombs, and of ``.pt --verify`` (a script, not a test):

    .venv/bin/python tests/benchmarks/bench_hostile.py [--mib 1024] [--baseline /work/main] [--timeout 120] [--only TEXT]

Builds, in a temporary folder, the memory bombs of issue 10 (each file under 1 MB): a pickle asking
for ``bytearray(3 GiB)`` (zip and legacy format), a deflated ``data.pkl`` and a deflated storage
of 1 GiB each, a deflated data.pkl of 15 M empty lists (15 KB, gigabytes unpickled; trial 5, F18),
a stride-0 view that writes 4 GiB (refused, then written with ``--allow-expansion``,
which streams it out in 8 MiB pieces instead of making it contiguous whole); and a plain ``torch.save`` checkpoint of
``--mib`` MiB float32 tensors converted with ``--verify``. Each runs ``mapper convert`` in its own
child process; the table gives its exit code, wall time and peak RSS (``ru_maxrss`` from
``os.wait4``), and, with ``--baseline DIR`` (another checkout, e.g. main before this change), the
same command run with mapper_core imported from DIR and the ratio of the two. A baseline run past
``--timeout`` seconds is stopped and shown as such. Goal (issue 10): peak RSS ≤ 1 GB for every
input under 1 MB.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
NAMES = ["bytearray(3 GiB) in the pickle", "bytearray(3 GiB), legacy format", "deflated data.pkl, 1 GiB",
         "deflated storage, 1 GiB", "stride-0 view, 4 GiB out", "15 M empty lists, deflated"]


# The editable install's import hook comes before sys.path, so PYTHONPATH alone would not reach
# another checkout: drop the hook, then import mapper_core from that checkout.
BASELINE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv[1])
from mapper_core.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int | str, float, float]:
    """(exit code or 'timeout', wall seconds, peak RSS MB) of one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    code: int | str = "timeout"
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.perf_counter() - start > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.stderr.close()
    return code, time.perf_counter() - start, usage.ru_maxrss / 1024


def build(folder: Path, mib: int) -> None:
    """Run in a child of its own: ru_maxrss survives exec, so the measuring parent must stay small."""
    import torch

    import hostile_torch as H

    cases = {
        "bytearray(3 GiB) in the pickle": H.bytearray_bomb(folder / "ba.pt", 3 << 30),
        "bytearray(3 GiB), legacy format": H.legacy_bytearray_bomb(folder / "lba.pt", 3 << 30),
        "deflated data.pkl, 1 GiB": H.deflate_bomb(folder / "dpkl.pt", 1 << 30),
        "deflated storage, 1 GiB": H.deflate_bomb(folder / "dsto.pt", 1 << 30, "data/0"),
        "stride-0 view, 4 GiB out": H.stride0_view(folder / "s0.pt", 1 << 30),
        "15 M empty lists, deflated": H.list_bomb(folder / "lists.pt", 15_000_000),
    }
    big = folder / "plain.pt"
    rows = mib * 4 // 16  # 16 tensors of rows x 65,536 float32 (256 KiB a row): mib MiB in all
    torch.save({f"w{i}": torch.full((rows, 1 << 16), float(i)) for i in range(16)}, big)
    assert list(cases) == NAMES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--baseline", type=Path, help="another checkout to compare with (mapper_core imported from DIR)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--only", help="run only the cases whose name contains this text (e.g. verify, bytearray)")
    ap.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        return build(args.build, args.mib)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, __file__, "--build", str(folder), "--mib", str(args.mib)], check=True)
        files = ["ba.pt", "lba.pt", "dpkl.pt", "dsto.pt", "s0.pt", "lists.pt"]
        cases = dict(zip(NAMES, (folder / f for f in files)))
        cases["stride-0 view, --allow-expansion"] = folder / "s0.pt"  # written: 4 GiB streamed out
        cases[f".pt {args.mib} MiB --verify"] = folder / "plain.pt"
        print(f"{'case':34} {'input':>10} {'exit':>5} {'wall s':>7} {'RSS MB':>7}"
              + (f" {'base exit':>9} {'base s':>7} {'base RSS':>8} {'RSS x base':>10}" if args.baseline else ""))
        for name, src in cases.items():
            if args.only and args.only not in name:
                continue
            out = folder / "out.safetensors"
            cmd = [sys.executable, "-m", "mapper_core", "convert", str(src), str(out), "-q", "--force"]
            if "verify" in name:
                cmd.append("--verify")
            if "allow-expansion" in name:
                cmd.append("--allow-expansion")
            row = f"{name:34} {src.stat().st_size:>10,}"
            code, wall, rss = run(cmd, dict(os.environ), args.timeout)
            row += f" {code!s:>5} {wall:7.1f} {rss:7.0f}"
            out.unlink(missing_ok=True)
            if args.baseline:
                bcode, bwall, brss = run([sys.executable, "-c", BASELINE, str(args.baseline)] + cmd[3:],
                                         dict(os.environ), args.timeout)
                row += f" {bcode!s:>9} {bwall:7.1f} {brss:8.0f} {rss / brss:10.2f}"
                out.unlink(missing_ok=True)
            print(row, flush=True)


if __name__ == "__main__":
    main()
