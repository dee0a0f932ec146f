"""Run two models on the same inputs and compare the outputs of the modules a plan pairs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..errors import BadInputError, PluginError, called_exit
from ..plan.kinds import split_key
from ..plan.plan import Plan
from . import outputs as final_outputs

Runner = Callable[[nn.Module, Sequence[torch.Tensor]], Any]

# torch.testing.assert_close's defaults: dtype → (rtol, atol)
_TOLERANCES = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5),
               torch.float64: (1e-7, 1e-7)}


def default_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) as ``torch.testing.assert_close`` picks them for ``dtype`` (exact for others)."""
    return _TOLERANCES.get(dtype, (0.0, 0.0))


def run_model(module: nn.Module, inputs: Sequence[torch.Tensor]) -> Any:
    """The default way to run a model: ``module(*inputs)``."""
    return module(*inputs)


def module_pairs(plan: Plan) -> list[tuple[str, str]]:
    """(source module, target module) for every module the plan moves a tensor between, in plan order."""
    seen: dict[tuple[str, str], None] = {}
    for m in plan.loadable:
        seen.setdefault((split_key(m.source)[0], split_key(m.target)[0]), None)
    return list(seen)


@dataclass(frozen=True)
class ModuleResult:
    """One paired module: the shapes of its outputs, how far apart they are, and the verdict."""

    source: str
    target: str
    source_shape: tuple[int, ...] | None
    target_shape: tuple[int, ...] | None
    max_abs: float | None = None
    rel: float | None = None
    cosine: float | None = None
    ok: bool | None = None  # None: not compared (see note)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target,
                "source_shape": None if self.source_shape is None else list(self.source_shape),
                "target_shape": None if self.target_shape is None else list(self.target_shape),
                "max_abs_diff": self.max_abs, "rel_error": self.rel, "cosine": self.cosine, "ok": self.ok,
                "note": self.note}


@dataclass(frozen=True)
class VerifyResult:
    """Every paired module in forward order, the tolerance used, and what was loaded."""

    modules: tuple[ModuleResult, ...]
    rtol: float
    atol: float
    inputs: tuple[str, ...] = ()
    loaded: int = 0
    kind_findings: tuple[str, ...] = ()  # the plan's kind-check findings, loaded anyway to be judged here
    extra: dict = field(default_factory=dict)
    # the models' final outputs (source and target are FINAL); None when not run through compare_models
    final: ModuleResult | None = None
    left_behind: tuple[LeftBehind, ...] = ()  # source modules whose weights the plan did not load
    # source keys the plan did not name but loaded all the same: tied to a loaded key, in both models
    tied: tuple[TiedKey, ...] = ()

    @property
    def compared(self) -> tuple[ModuleResult, ...]:
        return tuple(m for m in self.modules if m.ok is not None)

    @property
    def first_divergent(self) -> ModuleResult | None:
        """The first paired module beyond tolerance in forward order; else the final outputs, when they are."""
        first = next((m for m in self.modules if m.ok is False), None)
        return first if first is not None or self.final is None or self.final.ok is not False else self.final

    @property
    def passed(self) -> bool:
        """Nothing compared is beyond tolerance, and something was compared."""
        final_compared = self.final is not None and self.final.ok is not None
        return (bool(self.compared) or final_compared) and self.first_divergent is None

    @property
    def complete(self) -> bool:
        """Passed, and nothing left unproven: every source module with weights was loaded, or the final
        outputs were compared and agree (so what was left behind did not change them)."""
        return self.passed and (not self.left_behind or (self.final is not None and self.final.ok is True))

    def to_dict(self) -> dict[str, Any]:
        first = self.first_divergent
        return {"passed": self.passed, "complete": self.complete, "rtol": self.rtol, "atol": self.atol,
                "inputs": list(self.inputs), "loaded": self.loaded, "kind_findings": list(self.kind_findings),
                "first_divergent": None if first is None else {"source": first.source, "target": first.target},
                "modules": [m.to_dict() for m in self.modules],
                "final_output": None if self.final is None else self.final.to_dict(),
                "left_behind": [x.to_dict() for x in self.left_behind],
                "tied": [x.to_dict() for x in self.tied],
                "summary": {"paired": len(self.modules), "compared": len(self.compared),
                            "divergent": sum(1 for m in self.modules if m.ok is False),
                            "left_behind_modules": len(self.left_behind), "tied": len(self.tied)}}


FINAL = "(final output)"  # source and target of the final outputs' ModuleResult


@dataclass(frozen=True)
class LeftBehind:
    """A source module with weights some of which the plan did not load, and why (per key)."""

    module: str
    keys: tuple[str, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "keys": list(self.keys), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class TiedKey:
    """A source key no rule loaded that is one tensor with ``tied_to`` in the source model, which the plan
    loaded into ``into``; ``target`` is tied to ``into`` in the target model, so it holds the same value."""

    source: str
    tied_to: str
    into: str
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "tied_to": self.tied_to, "into": self.into, "target": self.target}


class _Recorder:
    """Forward hooks that keep each named module's outputs and the order modules first ran in."""

    def __init__(self, model: nn.Module, names: Iterable[str]):
        wanted = set(names)
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.order: dict[str, int] = {}
        self.handles = [module.register_forward_hook(self._hook(name))
                        for name, module in model.named_modules() if name in wanted]

    def _hook(self, name: str):
        def hook(module, args, output):
            tensor = _first_tensor(output)
            if tensor is not None:
                self.order.setdefault(name, len(self.order))
                # a copy: an in-place op after the module (ReLU(inplace=True)) would change it
                self.outputs.setdefault(name, []).append(tensor.detach().clone())
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    def flat(self, name: str) -> tuple[torch.Tensor | None, tuple[int, ...] | None]:
        """All outputs of ``name`` as one flat float64 vector, and the shape of the first call."""
        outs = self.outputs.get(name)
        if not outs:
            return None, None
        return torch.cat([o.reshape(-1).to(torch.float64) for o in outs]), tuple(outs[0].shape)


def _first_tensor(output: Any) -> torch.Tensor | None:
    """The first tensor a module returned (in a tuple, dict, named tuple or dataclass as well)."""
    found = final_outputs.leaves(output)
    return found[0].tensor if found else None


def compare_models(pairs: Sequence[tuple[str, str]], source: nn.Module, target: nn.Module,
                   inputs: Sequence[torch.Tensor], *, run_source: Runner = run_model, run_target: Runner = run_model,
                   rtol: float | None = None, atol: float | None = None,
                   names: tuple[str, str] = ("the source model", "the target model")) -> VerifyResult:
    """Run both models (in the mode they are in, without gradients) and compare each pair's
    outputs. Tolerances default to ``torch.testing.assert_close``'s for the target's output dtype.
    A model that cannot run on ``inputs`` is a BadInputError naming it (``names``) and the inputs."""
    recorders = (_Recorder(source, [s for s, _ in pairs]), _Recorder(target, [t for _, t in pairs]))
    try:
        with torch.no_grad():
            returned = [final_outputs.leaves(_run(model, runner, inputs, name))
                        for model, runner, name in ((source, run_source, names[0]), (target, run_target, names[1]))]
    finally:
        for r in recorders:
            r.close()
    rec_s, rec_t = recorders
    dtypes = [o[0].dtype for o in rec_t.outputs.values() if o and o[0].is_floating_point()]
    # nothing paired ran: the output's dtype
    dtypes += [x.tensor.dtype for x in returned[1] if x.tensor.is_floating_point()]
    d_rtol, d_atol = default_tolerance(dtypes[0] if dtypes else torch.float32)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    results = [_compare(s, t, rec_s, rec_t, rtol, atol) for s, t in pairs]
    last = len(rec_s.order) + len(rec_t.order)
    results.sort(key=lambda r: (rec_s.order.get(r.source, last), rec_t.order.get(r.target, last)))
    return VerifyResult(tuple(results), rtol, atol, final=_compare_final(*returned, rtol, atol))


def _compare_final(a: final_outputs.Leaves, b: final_outputs.Leaves, rtol: float, atol: float) -> ModuleResult:
    shape_a = tuple(a[0].tensor.shape) if len(a) == 1 else None
    shape_b = tuple(b[0].tensor.shape) if len(b) == 1 else None
    why = final_outputs.not_comparable(a, b)
    if why:
        return ModuleResult(FINAL, FINAL, shape_a, shape_b, note=f"not comparable: {why}")
    return ModuleResult(FINAL, FINAL, shape_a, shape_b, *_measure(final_outputs.flat(a), final_outputs.flat(b),
                                                                   rtol, atol))


def _run(model: nn.Module, runner: Runner, inputs: Sequence[torch.Tensor], name: str) -> Any:
    try:
        return runner(model, inputs)
    except Exception as exc:  # the model's or the plugin's code: say which model and which inputs
        shapes = _shapes(inputs)
        raise BadInputError(f"{name} could not run on the inputs {shapes}: {type(exc).__name__}: {exc}; give "
                            "the inputs the model takes (--input, in order), or run it through its plugin's "
                            "input_adapter") from None
    except SystemExit as exc:  # the model's or the plugin's failure, not the command's exit
        raise PluginError(f"{name} {called_exit(exc, f'while running on the inputs {_shapes(inputs)}')}") from exc


def _shapes(inputs: Sequence[torch.Tensor]) -> str:
    return ", ".join(str(list(x.shape)) for x in inputs) or "(none)"


def _compare(s: str, t: str, rec_s: _Recorder, rec_t: _Recorder, rtol: float, atol: float) -> ModuleResult:
    a, shape_a = rec_s.flat(s)
    b, shape_b = rec_t.flat(t)
    if a is None or b is None:
        which = " and ".join(n for n, x in (("source", a), ("target", b)) if x is None)
        return ModuleResult(s, t, shape_a, shape_b, note=f"not run by the {which} model on these inputs")
    if a.numel() != b.numel():
        return ModuleResult(s, t, shape_a, shape_b,
                            note=f"not comparable: {a.numel()} values against {b.numel()}")
    return ModuleResult(s, t, shape_a, shape_b, *_measure(a, b, rtol, atol))


def _measure(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> tuple[float, float, float, bool]:
    """(max abs diff, relative error, cosine, within tolerance) of two flat float64 vectors."""
    diff = (a - b).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    norm_a, norm_b = float(a.norm()), float(b.norm())
    rel = float((a - b).norm()) / norm_a if norm_a > 0 else float((a - b).norm())
    cosine = float(a @ b) / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else float(norm_a == norm_b)
    ok = bool(torch.all(diff <= atol + rtol * a.abs()))  # a NaN on either side fails, as in assert_close
    return max_abs, rel, cosine, ok
