"""What a torch pickle asks for, read statically: its storages and the memory it would allocate.

``torch.load(weights_only=True)`` runs nothing unsafe, but the globals it allows can still
allocate: ``bytearray(3 << 30)`` is a few bytes of pickle and 3 GiB of zeroed memory, and so
are the legacy constructors ``torch.FloatStorage(n)`` and ``torch.FloatTensor(n)``. This
module walks the pickle opcode by opcode (the standard library's :func:`pickletools.genops`;
nothing is imported or run) with a small model of the unpickler's stack, so the reader can
check those requests, and every storage the pickle names, before torch allocates anything.

The model tracks only the values these checks need (numbers, strings, tuples, globals, the
memo); every other value is an opaque placeholder, and each opcode's effect on the stack
comes from its own description in :mod:`pickletools`. No torch here.
"""
from __future__ import annotations

import pickletools
from dataclasses import dataclass, field
from typing import IO, Any

_MARK = object()
_INTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_TEXT = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
         "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET = {"GET", "BINGET", "LONG_BINGET"}
_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
# Callables weights_only allows that allocate from a number: bytes per element requested
# (8 for the tensor and storage constructors: the widest of their element types but complex).
_ALLOCATORS = {"builtins.bytearray": 1, "torch.storage.UntypedStorage": 1, "torch.storage.TypedStorage": 8}


def _allocation_unit(name: str) -> int | None:
    if name in _ALLOCATORS:
        return _ALLOCATORS[name]
    module, _, attr = name.rpartition(".")
    if module in ("torch", "torch.cuda") and (attr.endswith("Storage") or attr.endswith("Tensor")):
        return 16 if attr.startswith("Complex") else 8
    return None


@dataclass(frozen=True)
class Global:
    name: str  # "module.attr"


@dataclass(frozen=True)
class StorageRef:
    """A storage the pickle loads by persistent id: ``('storage', class, key, location, numel)``."""

    key: str
    storage_class: str  # e.g. "torch.FloatStorage"
    location: str
    numel: int


@dataclass
class PickleFacts:
    storages: dict[str, StorageRef] = field(default_factory=dict)
    allocations: list[tuple[str, int]] = field(default_factory=list)  # (callable, bytes requested)

    @property
    def allocated(self) -> int:
        return sum(n for _, n in self.allocations)


class ScanError(ValueError):
    """The pickle is malformed (an opcode with too few values under it, a bad argument)."""


def _product(values: tuple) -> int | None:
    n = 1
    for v in values:
        if isinstance(v, tuple):
            inner = _product(v)
            if inner is None:
                return None
            n *= inner
        elif isinstance(v, int) and not isinstance(v, bool):
            n *= max(v, 0)
        else:
            return None
    return n


def scan(stream: IO[bytes], facts: PickleFacts | None = None) -> PickleFacts:
    """Walk one pickle from ``stream`` (up to its STOP) and add what it asks for to ``facts``."""
    facts = facts if facts is not None else PickleFacts()
    stack: list[Any] = []
    memo: dict[int, Any] = {}

    def pop(n: int = 1) -> list[Any]:
        if n > len(stack):
            raise ScanError("an opcode finds too few values on the stack")
        out = stack[len(stack) - n:] if n else []
        del stack[len(stack) - n:]
        return out

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise ScanError("an opcode needs a MARK that is not there")

    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name == "STOP":
                break
            if name in _INTS or name in _TEXT:
                stack.append(arg)
            elif name == "MARK":
                stack.append(_MARK)
            elif name == "GLOBAL":
                stack.append(Global(str(arg).replace(" ", ".")))
            elif name == "STACK_GLOBAL":
                module, attr = pop(2)
                stack.append(Global(f"{module}.{attr}"))
            elif name in _TUPLES:
                stack.append(tuple(pop(_TUPLES[name])))
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in _PUT:
                memo[arg] = stack[-1] if stack else None
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else None
            elif name in _GET:
                stack.append(memo.get(arg))
            elif name == "DUP":
                stack.append(stack[-1] if stack else None)
            elif name == "BINPERSID":
                stack.append(_persistent(pop()[0], facts))
            elif name in ("REDUCE", "NEWOBJ"):
                func, args = pop(2)
                stack.append(_call(func, args, facts))
            else:
                _generic(op, pop, pop_mark, stack)
    except ScanError:
        raise
    except Exception as exc:  # a truncated argument, a bad opcode: genops says what
        raise ScanError(str(exc) or type(exc).__name__) from None
    return facts


def _generic(op: pickletools.OpcodeInfo, pop: Any, pop_mark: Any, stack: list[Any]) -> None:
    """Any other opcode: take what its description says it consumes, push placeholders."""
    before = op.stack_before
    if pickletools.markobject in before:
        below = before.index(pickletools.markobject)
        pop_mark()
        pop(below)
    else:
        pop(len(before))
    stack.extend([None] * len(op.stack_after))


def _persistent(pid: Any, facts: PickleFacts) -> Any:
    if (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], Global)
            and isinstance(pid[4], int)):
        ref = StorageRef(str(pid[2]), pid[1].name, str(pid[3]), pid[4])
        facts.storages.setdefault(ref.key, ref)
        return ref
    return None


def _call(func: Any, args: Any, facts: PickleFacts) -> Any:
    if not isinstance(func, Global):
        return None
    if func.name == "torch.Size" and isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], tuple):
        return args[0]  # a shape, kept so a constructor given one can be measured
    unit = _allocation_unit(func.name)
    if unit is not None and isinstance(args, tuple) and args:
        count = _product(args)
        if count:
            facts.allocations.append((func.name, count * unit))
    return None
