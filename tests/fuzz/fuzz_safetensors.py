"""Fuzz the ``mapper`` command line with mutated checkpoints (a script, not collected as a test):

    .venv/bin/python tests/fuzz/fuzz_safetensors.py [--cases 10000] [--seed 0] [--timeout 10] [--subprocess]

Builds valid seeds (a safetensors file with several dtypes and metadata, a sharded
``*.safetensors.index.json`` with two shards, a small torch ``.pt``), then for each case
mutates one of them (byte flips, truncation, splices, and JSON-aware edits of a header or an
index: wrong types, huge or negative numbers, unknown dtypes, duplicate or surrogate keys,
deep nesting, extra fields, shard names that are too long, folders, devices, loops or
links outside the folder) and runs one of ``mapper inspect``, ``mapper plan --rules``,
``mapper convert --verify`` on it. A case fails on a traceback (an exception escaping
``main``, or "Traceback" on stderr), a hang (over ``--timeout`` seconds), an exit code other
than 0, 1 or 2, or an output that ``safetensors.safe_open`` cannot read back (every tensor;
F6 tensors, which no framework returns, excepted). Prints the figures and the first failures;
exits 1 when any case failed. Runs in-process (tests/helpers/cli_runner.py) unless
``--subprocess`` starts the real console script for every case.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "helpers"))

from cli_runner import mapper  # noqa: E402
from safetensors_corpus import CORPUS, OFFICIAL_DTYPES, official  # noqa: E402

RULES = "version: 1\nname: fuzz\nunmatched: keep\nrules:\n  - match: 'a\\.(.+)'\n    target: 'renamed.{1}'\n"
WEIRD_VALUES = [None, True, -1, 0, 1, 2**63, 2**64, 10**30, 1.5, "", "F32", "\ud800", [], {}, [[[[]]]],
                {"F32": None}, "x" * 300, [0, 0], [2**63, 0], "../x.safetensors", "/dev/zero", "."]


class Hang(Exception):
    pass


@dataclass
class Figures:
    cases: int = 0
    exits: dict[int, int] = field(default_factory=dict)
    tracebacks: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    bad_exits: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    outputs_checked: int = 0

    @property
    def failures(self) -> int:
        return len(self.tracebacks) + len(self.hangs) + len(self.bad_exits) + len(self.unreadable)


# --- seeds --------------------------------------------------------------------------------------


def st_bytes(tensors: dict[str, tuple[str, list[int]]], metadata: dict | None, rng: random.Random) -> bytes:
    header: dict = {"__metadata__": metadata} if metadata is not None else {}
    data = b""
    for key, (dtype, shape) in tensors.items():
        n = 1
        for d in shape:
            n *= d
        size = n * OFFICIAL_DTYPES[dtype] // 8
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + size]}
        data += bytes(rng.randrange(256) for _ in range(size))
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def seeds(rng: random.Random) -> dict[str, bytes]:
    tensors = {"a.weight": ("F32", [2, 3]), "a.bias": ("F16", [3]), "a.steps": ("I64", []),
               "a.mask": ("BOOL", [4]), "a.q": ("F8_E4M3", [2, 2]), "a.f4": ("F4", [2, 2]), "b.empty": ("BF16", [0, 2])}
    out = {"single": st_bytes(tensors, {"format": "pt", "note": "seed"}, rng),
           "shard1": st_bytes({"a.weight": ("F32", [2, 2]), "a.bias": ("F32", [2])}, {"format": "pt"}, rng),
           "shard2": st_bytes({"b.weight": ("I32", [3]), "b.c64": ("C64", [1])}, None, rng)}
    out["index"] = json.dumps({"metadata": {"total_size": 40}, "weight_map": {
        "a.weight": "s-1.safetensors", "a.bias": "s-1.safetensors",
        "b.weight": "s-2.safetensors", "b.c64": "s-2.safetensors"}}).encode()
    try:
        import io

        import torch

        buf = io.BytesIO()
        torch.save({"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(3, dtype=torch.float16)}, buf)
        out["pt"] = buf.getvalue()
    except ModuleNotFoundError:
        pass
    return out


# --- mutations ----------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        kind = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if kind == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1 and b:
            b[min(pos, len(b) - 1)] = rng.choice([0, 0x7B, 0x7D, 0x22, 0x5C, 0xFF, 0x20, rng.randrange(256)])
        elif kind == 2:
            del b[pos:pos + rng.randrange(1, 16)]
        elif kind == 3:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            b = b[:pos]
    return bytes(b)


def mutate_header(data: bytes, rng: random.Random) -> bytes:
    """Edit the header's JSON and write it back with a correct length (so the checks past it are reached)."""
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    keys = list(header) or ["x"]
    key = rng.choice(keys)
    kind = rng.randrange(9)
    if kind == 0 and isinstance(header.get(key), dict):
        header[key][rng.choice(["dtype", "shape", "data_offsets", "extra"])] = rng.choice(WEIRD_VALUES)
    elif kind == 1 and isinstance(header.get(key), dict):
        header[key]["dtype"] = rng.choice(sorted(OFFICIAL_DTYPES) + ["F33", "f32"])
    elif kind == 2 and isinstance(header.get(key), dict) and isinstance(header[key].get("shape"), list):
        header[key]["shape"] = header[key]["shape"] + [rng.choice([0, 1, 2, 2**63, 2**64 - 1])]
    elif kind == 3:
        header["__metadata__"] = rng.choice(WEIRD_VALUES + [{"format": "np"}, {"k": 1}])
    elif kind == 4:
        header[rng.choice(["\ud800", "x" * 1000, "", "__metadata__", key + "\n\x1b[31m"])] = header.get(key, {})
    elif kind == 5:  # deep nesting, in a field the checks would otherwise ignore
        depth = rng.choice([100, 130, 3000, 100_000])
        text = (b'{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0],"x":' + b"[" * depth + b"]" * depth + b"}}")
        return struct.pack("<Q", len(text)) + text
    elif kind == 6 and isinstance(header.get(key), dict) and isinstance(header[key].get("data_offsets"), list):
        offs = header[key]["data_offsets"]
        header[key]["data_offsets"] = [offs[0] + rng.choice([-1, 1, 2**63]), offs[1] + rng.choice([0, 1, -1])]
    text = json.dumps(header).encode()
    if kind == 7:
        text = b" \n" + text + b"  "
    elif kind == 8 and len(keys) > 1:  # a duplicate key, written by hand
        text = text[:-1] + b"," + json.dumps(keys[0]).encode() + b":" + json.dumps(header[keys[0]]).encode() + b"}"
    return struct.pack("<Q", len(text)) + text + body


def mutate_index(folder: Path, rng: random.Random) -> None:
    index = folder / "m.safetensors.index.json"
    doc = json.loads(index.read_text())
    kind = rng.randrange(8)
    wm = doc["weight_map"]
    key = rng.choice(list(wm))
    if kind == 0:
        wm[key] = rng.choice(WEIRD_VALUES + ["x" * 300 + ".safetensors", "missing.safetensors"])
    elif kind == 1:
        doc["weight_map"] = rng.choice([{}, [], None, "x"])
    elif kind == 2:
        (folder / "dir.safetensors").mkdir()
        wm[key] = "dir.safetensors"
    elif kind == 3:
        os.symlink("loop.safetensors", folder / "loop.safetensors")
        wm[key] = "loop.safetensors"
    elif kind == 4:
        os.symlink("/dev/null", folder / "dev.safetensors")
        wm[key] = "dev.safetensors"
    elif kind == 5:
        outside = folder.parent / f"outside-{folder.name}.safetensors"
        shutil.copy(folder / wm[key], outside) if isinstance(wm[key], str) else None
        os.symlink(outside, folder / "link.safetensors")
        for k in [k for k, v in wm.items() if v == wm[key]]:
            wm[k] = "link.safetensors"
    elif kind == 6:
        doc["metadata"] = rng.choice(WEIRD_VALUES)
    else:
        del wm[key]
    text = json.dumps(doc)
    if rng.random() < 0.2:
        text = mutate_bytes(text.encode(), rng).decode("utf-8", "replace")
    index.write_text(text, encoding="utf-8", errors="surrogatepass")


def make_case(folder: Path, seed_files: dict[str, bytes], rng: random.Random) -> Path:
    """Write one mutated checkpoint into ``folder``; return the path to give the CLI."""
    pick = rng.choice(["single", "single", "single", "index", "index"] + (["pt"] if "pt" in seed_files else []))
    if pick == "index":
        (folder / "s-1.safetensors").write_bytes(seed_files["shard1"])
        (folder / "s-2.safetensors").write_bytes(seed_files["shard2"])
        (folder / "m.safetensors.index.json").write_bytes(seed_files["index"])
        which = rng.randrange(3)
        if which == 0:
            mutate_index(folder, rng)
        else:
            shard = folder / f"s-{which}.safetensors"
            shard.write_bytes(mutate_header(shard.read_bytes(), rng) if rng.random() < 0.6
                              else mutate_bytes(shard.read_bytes(), rng))
        return folder / "m.safetensors.index.json"
    if pick == "pt":
        path = folder / "m.pt"
        path.write_bytes(mutate_bytes(seed_files["pt"], rng))
        return path
    path = folder / "m.safetensors"
    if rng.random() < 0.1:
        path.write_bytes(rng.choice(list(CORPUS.values())))
    elif rng.random() < 0.6:
        path.write_bytes(mutate_header(seed_files["single"], rng))
    else:
        path.write_bytes(mutate_bytes(seed_files["single"], rng))
    return path


# --- running ------------------------------------------------------------------------------------


def run_case(argv: list, timeout: float, use_subprocess: bool) -> tuple[int | str, str]:
    """(exit code, or "traceback"/"hang"; stderr) of one CLI run."""
    if use_subprocess:
        import subprocess

        try:
            proc = _process(argv, timeout)
        except subprocess.TimeoutExpired:
            return "hang", ""
        return proc.returncode, proc.stderr

    def alarm(signum: int, frame: object) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        proc = mapper(*argv)
    except Hang:
        return "hang", ""
    except BaseException as exc:  # noqa: BLE001 - an escaping exception is exactly the failure sought
        import traceback

        return "traceback", "".join(traceback.format_exception(exc))[-1500:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return proc.returncode, proc.stderr


def _process(argv: list, timeout: float):
    import subprocess

    from cli_runner import SCRIPT, environment

    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "mapper_core"]
    return subprocess.run([*command, *map(str, argv)], capture_output=True, text=True, env=environment(), timeout=timeout)


def readable(out: Path) -> str | None:
    """None when the official library reads every tensor of the output (a file or an index's shards)."""
    files = [out]
    if out.name.endswith(".index.json"):
        files = [out.parent / n for n in set(json.loads(out.read_text())["weight_map"].values())]
    for f in files:
        got = official(f, "pt")
        if not got.accepted and "F6" not in got.reason and "Dtype not understood" not in got.reason:
            return got.reason
    return None


def fuzz(cases: int, seed: int, timeout: float, use_subprocess: bool = False, log=print) -> Figures:
    rng = random.Random(seed)
    figures = Figures()
    root = Path(tempfile.mkdtemp(prefix="mapper-fuzz-"))
    seed_files = seeds(rng)
    rules = root / "rules.yaml"
    rules.write_text(RULES)
    failed = 0
    try:
        for i in range(cases):
            folder = root / f"case{i}"
            folder.mkdir()
            try:
                src = make_case(folder, seed_files, rng)
            except (ValueError, OSError, UnicodeError):
                shutil.rmtree(folder, ignore_errors=True)
                continue  # the mutation itself could not be written; not a case
            command = rng.choice(["inspect", "plan", "convert", "convert"])
            out = folder / rng.choice(["out.safetensors", "out.safetensors.index.json"])
            argv = {"inspect": ["inspect", src, "--json"], "plan": ["plan", src, "--rules", rules],
                    "convert": ["convert", src, out, "--verify", "-q"]
                    + (["--max-shard-size", "40B"] if rng.random() < 0.3 else [])}[command]
            code, stderr = run_case(argv, timeout, use_subprocess)
            figures.cases += 1
            what = f"case {i} ({command} {src.name}, seed {seed})"
            if code == "hang":
                figures.hangs.append(what)
            elif code == "traceback" or "Traceback (most recent call last)" in stderr:
                figures.tracebacks.append(f"{what}:\n{stderr}")
            elif code not in (0, 1, 2):
                figures.bad_exits.append(f"{what}: exit {code}\n{stderr[-500:]}")
            else:
                figures.exits[code] = figures.exits.get(code, 0) + 1  # type: ignore[index]
                if command == "convert" and code == 0:
                    index = out.parent / (out.name.split(".safetensors")[0] + ".safetensors.index.json")
                    target = out if out.exists() else index if index.exists() else None
                    if target is None:
                        figures.unreadable.append(f"{what}: exit 0 but no output at {out}")
                    else:
                        figures.outputs_checked += 1
                        why = readable(target)
                        if why:
                            figures.unreadable.append(f"{what}: {why}")
            if log and figures.failures > failed:
                failed = figures.failures
                last = (figures.tracebacks + figures.hangs + figures.bad_exits + figures.unreadable)[-1]
                log(f"FAILED {last[:3000]}", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
            if log and (i + 1) % 1000 == 0:
                log(f"  {i + 1} cases, {figures.failures} failures", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before a case counts as a hang")
    ap.add_argument("--subprocess", action="store_true", help="start the console script for every case")
    args = ap.parse_args()
    start = time.perf_counter()
    figures = fuzz(args.cases, args.seed, args.timeout, args.subprocess)
    elapsed = time.perf_counter() - start
    print(f"cases {figures.cases}; exit 0/1/2: {figures.exits.get(0, 0)}/{figures.exits.get(1, 0)}/"
          f"{figures.exits.get(2, 0)}; outputs read back {figures.outputs_checked}; tracebacks "
          f"{len(figures.tracebacks)}; hangs {len(figures.hangs)}; other exit codes {len(figures.bad_exits)}; "
          f"unreadable outputs {len(figures.unreadable)}; {elapsed:.0f} s")
    for failure in (figures.tracebacks + figures.hangs + figures.bad_exits + figures.unreadable)[:10]:
        print("---\n" + failure)
    return 1 if figures.failures else 0


if __name__ == "__main__":
    sys.exit(main())
