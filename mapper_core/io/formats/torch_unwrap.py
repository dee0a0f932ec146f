"""Which dict of a loaded torch checkpoint is its state dict (the unwrap rule of :mod:`.torch_format`).

A value beside the tensors of the chosen dict is left behind (``'step': 5``, a config). A
container that itself holds tensors is not such a value: it is a second set of weights (a GAN's
``G`` and ``D``, an EMA copy), and leaving it behind silently would lose them. The rule refuses
to choose then, naming each container and how many tensors it holds; the user names the dict
with ``unwrap`` (``--unwrap G``, or ``--unwrap ''`` for the tensors of the top level alone).
"""
from __future__ import annotations

import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ...errors import CheckpointError

class UndecidedError(CheckpointError):
    """The unwrap rule chose no state dict in a file that holds weights (containers of tensors
    beside tensors, or only containers): ``convert`` and ``plan`` refuse it, ``inspect`` shows
    every tensor with the ``--unwrap`` that would take it (:func:`survey`)."""


UNWRAP_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_SHOWN = 5  # containers named in a message


def is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and all(is_tensor(v) for v in obj.values())


KEY_SHOWN = 80  # characters of a key's repr in a message: a key can be a tuple of many parts


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        return "a dict with keys " + ", ".join(_key(k) for k in list(obj)[:8]) + (" ..." if len(obj) > 8 else "")
    return f"a {type(obj).__name__}"


def _key(key: Any) -> str:
    text = repr(key) if isinstance(key, (str, int)) else reprlib.repr(key)  # reprlib: bounded whatever the nesting
    return text if len(text) <= KEY_SHOWN else text[:KEY_SHOWN] + f"... ({len(text):,} characters)"


def _children(node: Any) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [(str(k), v) for k, v in node.items()]
    if isinstance(node, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(node)]
    return []


def _tensors_in(value: Any, past_optimizers: bool = True) -> Iterator[Any]:
    """Every tensor a container holds at any depth (each object visited once, so a loop ends); without
    ``past_optimizers``, none inside an optimizer's state."""
    seen, stack = set(), [value]
    while stack:
        node = stack.pop()
        if is_tensor(node):
            yield node
        elif id(node) not in seen and (past_optimizers or not is_optimizer_state(node)):
            seen.add(id(node))
            stack.extend(v for _, v in _children(node))


def tensors_inside(value: Any) -> int:
    """How many tensors a container holds at any depth."""
    return sum(1 for _ in _tensors_in(value))


def _dict_of_tensors_in(value: Any, at: str) -> str | None:
    """The dotted path of the first dict holding tensors directly, ``value`` itself first (breadth-first)."""
    queue, seen = [(at, value)], set()
    while queue:
        where, node = queue.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict) and any(is_tensor(v) for v in node.values()):
            return where
        queue.extend((f"{where}.{k}", v) for k, v in _children(node))
    return None


def nested_containers(state: dict, weights_only: bool = False) -> dict[str, int]:
    """Keys of ``state`` whose values are containers holding tensors → how many tensors each holds;
    with ``weights_only``, only those that may be weights (:func:`may_be_weights`)."""
    found = {}
    for k, v in state.items():
        if not is_tensor(v) and _children(v) and (not weights_only or may_be_weights(v)):
            n = tensors_inside(v)
            if n:
                found[str(k)] = n
    return found


def is_optimizer_state(value: Any) -> bool:
    """An optimizer's ``state_dict()``: its ``state`` (moments per parameter) and ``param_groups``."""
    return isinstance(value, dict) and "state" in value and "param_groups" in value


def may_be_weights(value: Any) -> bool:
    """Whether a container could hold a model's weights: not an optimizer's state, and some tensor
    in it (outside any optimizer's state) holds more than one value (a step counter or a loss scale
    alone is not weights)."""
    return any(t.numel() > 1 for t in _tensors_in(value, past_optimizers=False))


def _quoted(where: str) -> str:
    return where if where and all(c.isalnum() or c in "._-" for c in where) else repr(where)


def _plural(n: int, word: str = "tensor") -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _containers(node: dict, where: str, weights_only: bool = False) -> tuple[str, str | None]:
    """The containers of ``node`` holding tensors (with ``weights_only``, those that may be weights),
    named with their counts, and the path of the first dict of tensors among them that is not an
    optimizer's state (None when there is none: a list of bare tensors)."""
    nested = nested_containers(node, weights_only)
    prefix = f"{where}." if where else ""
    named = ", ".join(f"'{prefix}{k}' ({type(_value_at(node, k)).__name__}, {_plural(n)})"
                      for k, n in list(nested.items())[:_SHOWN])
    if len(nested) > _SHOWN:
        named += f" and {len(nested) - _SHOWN} more"
    if not weights_only and any(is_optimizer_state(_value_at(node, k)) for k in nested):
        named += " (an optimizer's state is not weights)"
    # the dict of tensors to suggest: never an optimizer's moments
    pick = next((p for p in (_dict_of_tensors_in(_value_at(node, k), prefix + k) for k in nested
                             if not is_optimizer_state(_value_at(node, k))) if p), None)
    return named, pick


def _take(pick: str | None, several: bool) -> str:
    if pick is None:
        return "pass --unwrap KEY.PATH to choose a dict of tensors (a number indexes a list)"
    return (f"pass --unwrap {_quoted(pick)} to take {'one of them' if several else 'it'} "
            "(a dotted path reaches others; a number indexes a list)")


def _refuse_nested(node: dict, path: Path, where: str, chosen_by: str) -> None:
    """Refuse a state dict chosen by the rule whose non-tensor values hold weights themselves (not
    an optimizer's state, nor counters: a flat state dict with ``{'_meta': {'step': tensor}}`` is fine)."""
    nested = nested_containers(node, weights_only=True)
    if not nested:
        return
    named, pick = _containers(node, where, weights_only=True)
    direct = sum(1 for v in node.values() if is_tensor(v))
    at = f"'{where}'" if where else "the top level"
    here = _quoted(where) if where else "''"
    raise CheckpointError(
        f"{path}: {at} (chosen by {chosen_by}) holds {_plural(direct)} beside containers that hold tensors "
        f"themselves: {named}. Those are weights too, and would be left behind; {_take(pick, len(nested) > 1)}, "
        f"or pass --unwrap {here} to take only the {_plural(direct)} of {at} "
        "and leave the containers behind"
    )


def _value_at(node: dict, key: str) -> Any:
    return next(v for k, v in node.items() if str(k) == key)


def _step(node: Any, part: str) -> tuple[bool, Any]:
    if isinstance(node, dict):
        if part in node:
            return True, node[part]
        if part.isdigit() and int(part) in node:  # a dict keyed by numbers (an optimizer's state)
            return True, node[int(part)]
    if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
        return True, node[int(part)]
    return False, None


def _at(node: Any, dotted: str) -> Any:
    """The value at ``dotted`` below ``node`` ('' = ``node``), a path :func:`_dict_of_tensors_in` found."""
    for part in dotted.split(".") if dotted else []:
        node = _step(node, part)[1]
    return node


def unwrap_state_dict(obj: Any, path: Path, unwrap: str | None = None) -> tuple[dict, str]:
    """The state dict inside a loaded checkpoint and the dotted path it was found at.

    The dict may hold non-tensor values beside its tensors (``'step': 5``, a config); they are
    kept, and the reader reports them instead of refusing the file. When the rule chooses, a
    container beside the tensors that holds tensors itself is refused (see the module docstring);
    a dict named by ``unwrap`` is taken as it is.
    """
    if unwrap is not None:
        node, trail = obj, []
        for part in unwrap.split(".") if unwrap else []:
            found, child = _step(node, part)
            if not found:
                at = f"'{'.'.join(trail)}'" if trail else "the top level"
                what = f"no index {part}" if isinstance(node, (list, tuple)) else f"no key '{part}'"
                raise CheckpointError(f"{path}: unwrap path '{unwrap}': {what} in {at} ({_describe(node)}"
                                      f"{f' of {len(node)}' if isinstance(node, (list, tuple)) else ''})")
            node, trail = child, trail + [part]
        _require_state_dict(node, path, unwrap, "--unwrap")
        return node, unwrap
    try:
        return _by_the_rule(obj, path)
    except CheckpointError as exc:
        if isinstance(obj, (dict, list, tuple)) and may_be_weights(obj):
            raise UndecidedError(str(exc)) from None
        raise


def _by_the_rule(obj: Any, path: Path) -> tuple[dict, str]:
    node, trail = obj, []
    while not _is_tensor_dict(node):
        step = next((k for k in UNWRAP_KEYS if isinstance(node, dict) and isinstance(node.get(k), dict)), None)
        if step is None:
            if isinstance(node, dict) and any(is_tensor(v) for v in node.values()):
                _refuse_nested(node, path, ".".join(trail), "the unwrap rule")
                break  # tensors beside other values: this is the state dict
            if trail:
                _require_state_dict(node, path, ".".join(trail), "the unwrap rule")
            raise CheckpointError(f"{path}: found no state dict: the file holds {_describe(obj)}, and none of "
                                  f"{', '.join(UNWRAP_KEYS)} is a dict of tensors; {_where_tensors_are(obj)}")
        node, trail = node[step], trail + [step]
    return node, ".".join(trail)


def _where_tensors_are(obj: Any) -> str:
    """What to pass when the rule found nothing: the containers holding tensors, or that none does."""
    if is_optimizer_state(obj):
        return ("it looks like an optimizer's state_dict() (keys 'state' and 'param_groups': moments per "
                "parameter), not a model's weights; convert the model's checkpoint instead")
    if isinstance(obj, dict) and nested_containers(obj):
        named, pick = _containers(obj, "")
        return f"the tensors are in {named}: {_take(pick, len(nested_containers(obj)) > 1)}"
    if isinstance(obj, (list, tuple)) and tensors_inside(obj):
        pick = _dict_of_tensors_in(obj, "")
        if pick:
            pick = pick.lstrip(".")
            return f"the first dict of tensors is at index {pick.split('.')[0]}: {_take(pick, False)}"
        return f"it holds {_plural(tensors_inside(obj))} but no dict of them; save a dict of tensors instead"
    return "it holds no tensors at all, so it is not a checkpoint of weights"


def _require_state_dict(node: Any, path: Path, dotted: str, chosen_by: str) -> None:
    where = f"'{dotted}'" if dotted else "the top level"
    if not isinstance(node, dict):
        raise CheckpointError(f"{path}: {where} (chosen by {chosen_by}) is {_describe(node)}, not a dict of tensors")
    if node and not any(is_tensor(v) for v in node.values()):
        kinds = ", ".join(f"'{k}' ({type(v).__name__})" for k, v in list(node.items())[:_SHOWN])
        if nested_containers(node):
            named, pick = _containers(node, dotted)
            raise CheckpointError(f"{path}: {where} (chosen by {chosen_by}) holds no tensors of its own; they are "
                                  f"in {named}: {_take(pick, len(nested_containers(node)) > 1)}")
        raise CheckpointError(
            f"{path}: {where} (chosen by {chosen_by}) holds no tensors, only {kinds}"
            f"{' ...' if len(node) > _SHOWN else ''}; pass --unwrap to choose the dict of tensors"
        )


def other_weights(obj: Any, chosen: str) -> dict[str, int]:
    """Containers beside the path the state dict was taken from (``chosen``, dotted) that may be
    weights too: an EMA copy (``model_ema``) beside ``model``, which the unwrap rule's choice leaves
    behind. Each is given as the ``--unwrap`` that takes it (the first dict of tensors inside it:
    Lightning's ``callbacks.EMA.ema_state_dict``, not ``callbacks``) → the tensors that takes (all
    the container's where it holds no dict of tensors)."""
    found: dict[str, int] = {}
    node, trail = obj, []
    for part in chosen.split(".") if chosen else []:
        if not isinstance(node, dict):
            break
        for k, v in node.items():
            if str(k) != part and not is_tensor(v) and _children(v) and may_be_weights(v):
                where = ".".join([*trail, str(k)])
                pick = _dict_of_tensors_in(v, where)
                found[pick or where] = tensors_inside(_at(v, pick[len(where) + 1:]) if pick else v)
        ok, node = _step(node, part)
        if not ok:
            break
        trail.append(part)
    return found



@dataclass(frozen=True)
class Survey:
    """Every tensor of a file the unwrap rule chose no state dict in, for ``mapper inspect``."""

    tensors: dict[str, Any]  # dotted path (any depth, in file order) → tensor
    unwrap_of: dict[str, str]  # dotted path → the --unwrap taking it (the dict holding it directly)
    choices: dict[str, int]  # each such --unwrap ('' for the top level) → how many tensors it takes
    extra: dict[str, Any]  # top-level values that are neither tensors nor hold any


def survey(obj: Any, path: Path) -> Survey:
    """Walk ``obj`` (a container) for every tensor in it. A dict holding tensors directly is an
    ``--unwrap`` choice, unless it is inside an optimizer's state (its moments are not weights)."""
    tensors: dict[str, Any] = {}
    unwrap_of: dict[str, str] = {}
    choices: dict[str, int] = {}
    seen: set[int] = set()
    stack: list[tuple[str, str, Any, bool]] = [("", "", obj, False)]  # parent, dotted path, node, in optimizer
    while stack:
        parent, where, node, in_optimizer = stack.pop()
        if is_tensor(node):
            if where in tensors:  # e.g. a top-level key 'G.w' beside G = {'w': ...}, or 0 beside '0'
                raise CheckpointError(f"{path}: two tensors are both at the dotted path '{where}'; pass --unwrap "
                                      f"to look at one container at a time ({_choices_hint(choices)})")
            tensors[where] = node
            if parent in choices:
                unwrap_of[where] = parent
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        in_optimizer = in_optimizer or is_optimizer_state(node)
        children = _children(node)
        direct = sum(1 for _, v in children if is_tensor(v))
        if isinstance(node, dict) and direct and not in_optimizer:
            choices[where] = direct
        stack.extend((where, f"{where}.{k}" if where else k, v, in_optimizer) for k, v in reversed(children))
    if "" in choices:  # the top level's own tensors last, as the refusal offers them
        choices[""] = choices.pop("")
    extra = {k: v for k, v in _children(obj) if not is_tensor(v) and not tensors_inside(v)}
    return Survey(tensors, unwrap_of, choices, extra)


def _choices_hint(choices: dict[str, int]) -> str:
    return ", ".join(f"--unwrap {_quoted(c)}" for c in choices) or "e.g. --unwrap KEY"
