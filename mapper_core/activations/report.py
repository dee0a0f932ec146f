"""verify's result as text; ``VerifyResult.to_dict()`` is the same result as JSON."""
from __future__ import annotations

from ..plan.text import shown
from ..specs import format_shape
from .compare import ModuleResult, VerifyResult


def _number(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _row(m: ModuleResult) -> list[str]:
    verdict = {True: "ok", False: "DIVERGES", None: m.note}[m.ok]
    shape = format_shape(m.target_shape) if m.target_shape is not None else format_shape(m.source_shape)
    return [shown(m.source), shown(m.target), shape, _number(m.max_abs), _number(m.rel),
            _number(m.cosine, 6), verdict]


def render_text(result: VerifyResult, title: str = "") -> str:
    """A table of the paired modules in forward order, then the first divergent one and the verdict."""
    lines = [title] if title else []
    lines.append(f"  inputs: {', '.join(result.inputs) or 'none'}; tolerance: rtol {result.rtol:g}, atol {result.atol:g}")
    lines.append(f"  loaded {result.loaded} target tensors through the plan")
    for finding in result.kind_findings:
        lines.append(f"  kind check (loaded anyway, to be judged by the activations): {shown(finding)}")
    header = ["source module", "target module", "output", "max abs diff", "rel error", "cosine", ""]
    rows = [header] + [_row(m) for m in result.modules]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    first = result.first_divergent
    compared = len(result.compared)
    if first is not None:
        lines.append(f"  first divergent module: {shown(first.source)} -> {shown(first.target)} "
                     f"(max abs diff {_number(first.max_abs)}, cosine {_number(first.cosine, 6)})")
        bad = sum(1 for m in result.modules if m.ok is False)
        lines.append(f"  result: DIVERGED: {bad} of {compared} compared modules beyond tolerance")
    elif compared:
        lines.append(f"  result: verified: {compared} of {len(result.modules)} paired modules within tolerance")
    else:
        lines.append("  result: nothing compared: no paired module ran in both models on these inputs")
    return "\n".join(lines)
