"""verify's result as text; ``VerifyResult.to_dict()`` is the same result as JSON."""
from __future__ import annotations

from ..plan.text import shown
from ..specs import format_shape
from ..io.inspection import counted
from .compare import FINAL, ModuleResult, VerifyResult


def _number(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _row(m: ModuleResult) -> list[str]:
    verdict = {True: "ok", False: "DIVERGES", None: m.note}[m.ok]
    shape = next((format_shape(x) for x in (m.target_shape, m.source_shape) if x is not None), "-")
    return [shown(m.source), shown(m.target), shape, _number(m.max_abs), _number(m.rel),
            _number(m.cosine, 6), verdict]


def render_text(result: VerifyResult, title: str = "") -> str:
    """A table of the paired modules in forward order and the final outputs, the source modules whose
    weights the plan did not load, then the first divergent one and the verdict."""
    lines = [title] if title else []
    lines.append(f"  inputs: {', '.join(result.inputs) or 'none'}; tolerance: rtol {result.rtol:g}, atol {result.atol:g}")
    lines.append(f"  loaded {result.loaded} target tensors through the plan")
    for finding in result.kind_findings:
        lines.append(f"  kind check (loaded anyway, to be judged by the activations): {shown(finding)}")
    header = ["source module", "target module", "output", "max abs diff", "rel error", "cosine", ""]
    rows = [header] + [_row(m) for m in result.modules] + ([_row(result.final)] if result.final is not None else [])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    for gone in result.left_behind:
        lines.append(f"  not loaded: {shown(gone.module) or '(top level)'}: {_keys(gone)}")
    for t in result.tied:
        lines.append(f"  loaded through a tie: {shown(t.source)} (tied to {shown(t.tied_to)}, which was loaded into "
                     f"{shown(t.into)}; the target ties {shown(t.target)} to that)")
    lines.append(_verdict(result))
    return "\n".join(lines)


def _keys(gone) -> str:
    members = [k.rpartition(".")[2] for k in gone.keys]
    reasons = sorted(set(gone.reasons))
    return f"{', '.join(members)} ({'; '.join(reasons)})"


def _verdict(result: VerifyResult) -> str:
    first = result.first_divergent
    compared = len(result.compared)
    final = result.final
    final_ok = final is not None and final.ok is True
    if first is not None:
        bad = sum(1 for m in result.modules if m.ok is False)
        numbers = f"(max abs diff {_number(first.max_abs)}, cosine {_number(first.cosine, 6)})"
        lines = [f"  first divergent: the final outputs {numbers}: every paired module is within tolerance, so the "
                 "difference comes from what the plan did not pair or load" if first.source == FINAL else
                 f"  first divergent module: {shown(first.source)} -> {shown(first.target)} {numbers}"]
        what = [f"{bad} of {compared} compared modules"] if bad else []
        what += ["the final outputs"] if final is not None and final.ok is False else []
        lines.append(f"  result: DIVERGED: {' and '.join(what)} beyond tolerance")
        return "\n".join(lines)
    if not result.passed:
        return ("  result: nothing compared: no paired module ran in both models on these inputs, and the final "
                "outputs could not be compared")
    done = f"{compared} of {len(result.modules)} paired modules" + (" and the final outputs" if final_ok else "")
    if result.complete:
        return f"  result: verified: {done} within tolerance"
    modules = ", ".join(shown(g.module) or "(top level)" for g in result.left_behind[:5])
    more = f" and {len(result.left_behind) - 5} more" if len(result.left_behind) > 5 else ""
    left = counted(len(result.left_behind), "source module")
    return (f"  result: PARTLY verified: {done} within tolerance, but {left} "
            f"with weights not loaded ({modules}{more}) and final outputs not compared: not proven that the "
            "target computes what the source does")
