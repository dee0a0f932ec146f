"""Planning benchmark (a script, not a test), issue 11's goals 1 and 6, the whole CLI as a user runs it:

    .venv/bin/python tests/benchmarks/bench_plan.py [--repeat 3] [--no-million] [--tmp DIR] [--before REPO]
                                                    [--no-bytecode]

The fixture: 100,000 source keys (``source_keys``: ``model.layers.L.blockN.NAME.weight``,
``stageN.convM.weight``, ... with N over the rules) in a safetensors file, and the same keys
planned against 10 general rules and 1,000 specific ones (``rules_10``, ``rules_1000``), as
JSON rules files. Every CLI figure is one ``mapper`` process from start to exit (best of
``--repeat`` after one warm-up run), with the peak RSS of that child (``os.wait4``). Children
read cached bytecode, as an installed package does (pip compiles it; here it goes to the temp
folder); ``--no-bytecode`` makes them compile every module on every run instead, which is
what a checkout under ``PYTHONDONTWRITEBYTECODE=1`` pays (about 0.15 s of start-up).

- ``mapper plan SRC --rules R --json`` and the text report, 10 and 1,000 rules: goal ≤ 1.0 s
  at 1,000 rules, and time(1,000) / time(10) ≤ 2;
- the same at 1,000,000 keys (``source_keys(1_000_000)``) with 1,000 rules: ≤ 8 s, ≤ 1 GB;
- start-up: ``mapper validate``, ``plan``, ``inspect`` and ``convert`` on small inputs, each
  ≤ 0.25 s, and none of them imports torch (``python -X importtime``);

plus, without goals, ``make_plan`` in-process with target specs (shape and kind checks) and
the naive loop it replaces. Each figure is printed beside its goal; ratios come from one run.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

from mapper_core.plan.make import make_plan  # noqa: E402
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern  # noqa: E402
from mapper_core.specs import TensorSpec  # noqa: E402

KEYS = 100_000
BLOCKS = 496  # rule families with a literal part after a digit run
STAGES = 496  # rule families with distinct literal prefixes
NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "up", "down", "gate", "norm", "mix", "out")
GOAL_SECONDS = 1.0  # mapper plan, 100,000 keys x 1,000 rules, JSON and text
GOAL_RATIO = 2.0  # time(1,000 rules) / time(10 rules)
GOAL_MILLION_SECONDS, GOAL_MILLION_MB = 8.0, 1024.0  # 1,000,000 keys x 1,000 rules
GOAL_START_SECONDS = 0.25  # validate, plan, inspect, convert on small inputs


@dataclass(frozen=True)
class Row:
    name: str
    value: float | None
    unit: str = "s"  # "s", "MB" or "x" (a ratio)
    goal: str = ""
    ok: bool | None = None
    note: str = ""


def source_keys(count: int = KEYS) -> dict[str, TensorSpec]:
    """Transformer-ish and conv-ish keys, some handled by prefix-less rules, some skipped, a few unmatched."""
    specs: dict[str, TensorSpec] = {}
    rng = random.Random(0)
    spec = TensorSpec("F32", (8, 8))
    while len(specs) < count:
        kind = rng.random()
        if kind < 0.45:
            key = f"model.layers.{rng.randrange(100)}.block{rng.randrange(BLOCKS + 4)}.{rng.choice(NAMES)}.weight"
        elif kind < 0.90:
            key = f"stage{rng.randrange(STAGES + 4)}.conv{rng.randrange(200)}.{rng.choice(('weight', 'bias'))}"
        elif kind < 0.96:
            key = f"{rng.choice(('encoder', 'decoder'))}.{rng.randrange(5000)}.{rng.choice(NAMES)}"
        else:
            key = f"aux.{rng.randrange(10 ** 6)}.num_batches_tracked"
        specs[key] = spec
    return specs


def rules_1000() -> RuleSet:
    """1,000 rules: one per block / stage (with literal numbers), plus a few prefix-less rules."""
    rules: list[tuple[str, str, dict]] = []
    for j in range(BLOCKS):
        rules.append((rf"model\.layers\.(\d+)\.block{j}\.(\w+)\.weight", f"layers.{{1}}.b{j}.{{2}}.w", {}))
    for j in range(STAGES):
        rules.append((rf"stage{j}\.conv(\d+)\.(weight|bias)", f"s{j}.convs.{{1+1}}.{{2|wb}}", {"wb": {"weight": "w", "bias": "b"}}))
    rules.append((r"(encoder|decoder)\.(\d+)\.(q|k|v)_proj", "{1}.attn.{2}.{3}", {}))
    rules.append((r"(encoder|decoder)\.(\d+)\.(\w+)", "{1}.{2}.{3}", {}))
    rules.append((r"[a-z]+\.(\d+)\.never", "never.{1}", {}))
    rules.append((r".*\.unused", "unused", {}))
    return _ruleset("bench-1000", rules)


def rules_10() -> RuleSet:
    """10 general rules that take the same keys as the 1,000 specific ones."""
    rules = [
        (r"model\.layers\.(\d+)\.block(\d+)\.(q|k|v)_proj\.weight", "layers.{1}.b{2}.{3}_proj.w", {}),
        (r"model\.layers\.(\d+)\.block(\d+)\.(\w+)\.weight", "layers.{1}.b{2}.{3}.w", {}),
        (r"stage(\d+)\.conv(\d+)\.(weight|bias)", "s{1}.convs.{2+1}.{3|wb}", {"wb": {"weight": "w", "bias": "b"}}),
        (r"(encoder|decoder)\.(\d+)\.(q|k|v)_proj", "{1}.attn.{2}.{3}", {}),
        (r"(encoder|decoder)\.(\d+)\.(\w+)", "{1}.{2}.{3}", {}),
        (r"[a-z]+\.(\d+)\.never", "never.{1}", {}),
        (r".*\.unused", "unused", {}),
        (r"head\.(\w+)", "head.{1}", {}),
        (r"embed\.(\w+)", "embed.{1}", {}),
        (r"final_norm\.(weight|bias)", "norm.{1}", {}),
    ]
    return _ruleset("bench-10", rules)


def _ruleset(name: str, rules: list[tuple[str, str, dict]]) -> RuleSet:
    return RuleSet(
        name=name,
        rules=tuple(Rule(i, m, t, tables=tables) for i, (m, t, tables) in enumerate(rules)),
        skip=(SkipPattern(r".*\.num_batches_tracked"), SkipPattern(r"ema\..*")),
    )


def target_specs(source: dict[str, TensorSpec], ruleset: RuleSet) -> dict[str, TensorSpec]:
    """The targets a clean plan fills, with the same shapes (so the shape check runs on every key)."""
    plan = make_plan(source, ruleset)
    return {m.target: source[m.source] for m in plan.mapped}


def naive_plan_keys(source: dict[str, TensorSpec], ruleset: RuleSet) -> int:
    """The baseline: every skip pattern, then every rule, with re.fullmatch, per key. Returns keys taken."""
    taken = 0
    for key in source:
        if any(s.pattern.fullmatch(key) for s in ruleset.skip):
            continue
        for rule in ruleset.rules:
            m = rule.pattern.fullmatch(key)
            if m is not None and rule.template.render(m, rule.tables) is not None:
                taken += 1
                break
    return taken


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_planning(repeat: int, tmp: Path) -> list[Row]:
    """make_plan in-process, with target specs (no goal: the CLI rows below carry the goals)."""
    source = source_keys()
    sets = {10: rules_10(), 1000: rules_1000()}
    seconds: dict[int, float] = {}
    rows: list[Row] = []
    for count, ruleset in sets.items():
        targets = target_specs(source, ruleset)
        s = make_plan(source, ruleset, targets).summary()
        seconds[count] = best_of(lambda: make_plan(source, ruleset, targets), repeat)
        rows.append(Row(f"make_plan {KEYS:,} keys x {count:,} rules, with targets", seconds[count],
                        note=f"mapped {s['mapped']}, skipped {s['skipped']}, unmatched {s['unmatched']}"))
    sample_size = 2_000
    sample = dict(list(source.items())[:: KEYS // sample_size])
    naive = best_of(lambda: naive_plan_keys(sample, sets[1000]), 1) * (KEYS / len(sample))
    rows.append(Row(f"naive loop x 1,000 rules (from {len(sample):,} keys, scaled)", naive,
                    note=f"{naive / seconds[1000]:.0f}x make_plan"))
    return rows


CHILD_ENV: dict[str, str] = dict(os.environ)  # main() sets how children treat bytecode


def child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one process."""
    start = time.perf_counter()
    # cwd: a neutral folder, or `python -m` would find this checkout's mapper_core before PYTHONPATH's
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**CHILD_ENV, **(env or {})},
                            cwd=tempfile.gettempdir())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({code}): {proc.stderr.read().decode()[-2000:]}")
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024, code


def wall(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Best wall time of ``cmd`` over ``repeat`` fresh processes, and the largest peak RSS."""
    child(cmd, env)  # warm-up: the page cache, and the bytecode an installed package has
    runs = [child(cmd, env) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def write_safetensors(path: Path, specs: dict[str, TensorSpec]) -> None:
    """A safetensors file with these specs in the writers' compact form, its data zeros (sparse)."""
    parts, pos = [], 0
    for key in sorted(specs):
        spec = specs[key]
        parts.append(json.dumps(key) + ":" + json.dumps(
            {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [pos, pos + spec.nbytes]},
            separators=(",", ":")))
        pos += spec.nbytes
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)))
        fh.write(header)
        fh.truncate(8 + len(header) + pos)


def write_rules(path: Path, ruleset: RuleSet) -> None:
    rules = [{"match": r.match, "target": r.target, **({"tables": r.tables} if r.tables else {})}
             for r in ruleset.rules]
    path.write_text(json.dumps({"version": 1, "name": ruleset.name, "rules": rules,
                                "skip": [s.match for s in ruleset.skip]}, indent=1))


MAPPER = str(Path(sys.executable).with_name("mapper"))
BEFORE: str | None = None  # --before REPO: another checkout's mapper_core, run beside ours


def before(cmd: list[str], repeat: int, took: float) -> str:
    """With --before: the same mapper command line with that checkout's code, as a note."""
    if BEFORE is None:
        return ""
    then, rss = wall([sys.executable, "-m", "mapper_core", *cmd[1:]], repeat, {"PYTHONPATH": BEFORE})
    return f"; before {then:.3f} s, {rss:.0f} MB (now {took / then:.2f}x)"


def measure_cli_plans(repeat: int, tmp: Path) -> list[Row]:
    """`mapper plan` on 100,000 keys with 10 and 1,000 rules, JSON and text."""
    source = source_keys()
    src = tmp / "many.safetensors"
    write_safetensors(src, source)
    rules = {10: tmp / "rules10.json", 1000: tmp / "rules1000.json"}
    write_rules(rules[10], rules_10())
    write_rules(rules[1000], rules_1000())
    target = tmp / "target.safetensors"
    write_safetensors(target, target_specs(source, rules_1000()))
    rows: list[Row] = []
    seconds: dict[tuple[int, str], float] = {}
    for form, extra in (("--json", ["--json"]), ("text", [])):
        for count in (10, 1000):
            cmd = [MAPPER, "plan", str(src), "--rules", str(rules[count]), *extra]
            took, rss = wall(cmd, repeat)
            seconds[count, form] = took
            goal = count == 1000
            rows.append(Row(f"mapper plan {KEYS:,} keys x {count:,} rules {form}", took,
                            goal=f"<= {GOAL_SECONDS:g} s" if goal else "",
                            ok=took <= GOAL_SECONDS if goal else None,
                            note=f"peak {rss:.0f} MB" + before(cmd, repeat, took)))
        ratio = seconds[1000, form] / seconds[10, form]
        rows.append(Row(f"  ratio time(1,000 rules) / time(10 rules), {form}", ratio, "x", f"<= {GOAL_RATIO:g}",
                        ratio <= GOAL_RATIO))
    took, rss = wall([MAPPER, "plan", str(src), "--rules", str(rules[1000]), "--target", str(target), "--json"],
                     repeat)
    rows.append(Row(f"mapper plan {KEYS:,} keys x 1,000 rules --json --target (no goal)", took,
                    note=f"peak {rss:.0f} MB; shape and kind checks against a target file"))
    return rows


MILLION = 1_000_000


def measure_million(repeat: int, tmp: Path) -> list[Row]:
    """`mapper plan --json` on 1,000,000 keys with 1,000 rules: wall and the child's peak RSS."""
    src = tmp / "million.safetensors"
    write_safetensors(src, source_keys(MILLION))
    rules = tmp / "rules1000.json"
    write_rules(rules, rules_1000())
    took, rss = wall([MAPPER, "plan", str(src), "--rules", str(rules), "--json"], 1)  # and a warm-up
    return [Row(f"mapper plan {MILLION:,} keys x 1,000 rules --json", took, goal=f"<= {GOAL_MILLION_SECONDS:g} s",
                ok=took <= GOAL_MILLION_SECONDS),
            Row("  its peak RSS", rss, "MB", f"<= {GOAL_MILLION_MB:g} MB", rss <= GOAL_MILLION_MB)]


SMALL_RULES = """\
version: 1
name: bench-cli
rules:
  - match: 'enc\\.(\\d+)\\.(weight|bias)'
    target: 'encoder.layers.{1}.{2}'
skip:
  - 'head\\..*'
"""


def imports_torch(cmd: list[str]) -> bool:
    """Whether ``cmd`` (a mapper command line) imports torch, by ``python -X importtime``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mapper_core", *cmd[1:]],
                          capture_output=True, text=True, env=CHILD_ENV)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in done.stderr.splitlines())


def measure_start_up(repeat: int, tmp: Path) -> list[Row]:
    """validate, plan, inspect, convert on a 1,000-tensor safetensors file, start to finish."""
    rules, src = tmp / "small.yaml", tmp / "small.safetensors"
    rules.write_text(SMALL_RULES)
    specs = {f"enc.{i}.weight": TensorSpec("F32", (16, 16)) for i in range(990)}
    specs.update({f"head.{i}.bias": TensorSpec("F32", (16,)) for i in range(10)})
    write_safetensors(src, specs)
    python, _ = wall([sys.executable, "-c", "pass"], repeat)
    rows = [Row("python -c pass (interpreter start-up, baseline)", python)]
    out = tmp / "small-out.safetensors"
    commands = {
        "validate": [MAPPER, "validate", str(rules)],
        "plan": [MAPPER, "plan", str(src), "--rules", str(rules), "--json"],
        "inspect": [MAPPER, "inspect", str(src)],
        "convert": [MAPPER, "convert", str(src), str(out), "--rules", str(rules), "--force", "-q"],
    }
    for name, cmd in commands.items():
        took, rss = wall(cmd, repeat)
        torch = imports_torch(cmd)
        rows.append(Row(f"mapper {name} (1,000 tensors)", took, goal=f"<= {GOAL_START_SECONDS:g} s",
                        ok=took <= GOAL_START_SECONDS and not torch,
                        note=f"{took / python:.1f}x start-up; {'IMPORTS TORCH' if torch else 'no torch'}; "
                             f"peak {rss:.0f} MB" + before(cmd, repeat, took)))
    return rows


# Measurements to run, in order.
MEASUREMENTS: list[Callable[[int, Path], list[Row]]] = [measure_start_up, measure_cli_plans, measure_million,
                                                        measure_planning]


def render(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'measurement':<{width}}  {'value':>9}  {'goal':<10}  result  note", "-" * (width + 44)]
    for r in rows:
        value = "" if r.value is None else (f"{r.value:.2f}" if r.unit == "x" else f"{r.value:.3f} s"
                                             if r.unit == "s" else f"{r.value:.0f} MB")
        result = "" if r.ok is None else ("ok" if r.ok else "MISSED")
        lines.append(f"{r.name:<{width}}  {value:>9}  {r.goal:<10}  {result:<6}  {r.note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument("--no-million", action="store_true", help="leave out the 1,000,000-key plan")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="folder for the fixture files")
    parser.add_argument("--before", metavar="REPO", help="also run the CLI rows with REPO's mapper_core "
                        "(python -m mapper_core, PYTHONPATH=REPO), e.g. an export of an older commit")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="children compile every module from source each run (PYTHONDONTWRITEBYTECODE=1) "
                             "instead of reading cached bytecode as an installed package does")
    args = parser.parse_args(argv)
    global BEFORE
    BEFORE = args.before
    measurements = [m for m in MEASUREMENTS if not (args.no_million and m is measure_million)]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-plan-", dir=args.tmp) as tmp:
        CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        if args.no_bytecode:
            CHILD_ENV["PYTHONDONTWRITEBYTECODE"] = "1"
        else:  # bytecode in the temp folder, not beside the sources (pip compiles an install the same way)
            CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        for measurement in measurements:
            rows.extend(measurement(args.repeat, Path(tmp)))
    print(f"python {sys.version.split()[0]}, best of {args.repeat} runs after a warm-up, "
          f"{'no bytecode cache' if args.no_bytecode else 'bytecode cached'}, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(render(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
