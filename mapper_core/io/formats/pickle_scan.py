"""What a torch pickle asks for, read without running it: its storages and the memory it would allocate.

``torch.load(weights_only=True)`` runs nothing unsafe, but the globals it allows can still
allocate: ``bytearray(3 << 30)`` is a few bytes of pickle and 3 GiB of zeroed memory, and so
are the legacy constructors ``torch.FloatStorage(n)`` and ``torch.FloatTensor(n)``. This
module reads the pickle with the standard library's own unpickler, but every global the pickle
names is replaced by a stand-in class (:meth:`_Recorder.find_class`): nothing is imported and
nothing real is called. A stand-in records what it is called with, so the reader can check
those requests, and every storage the pickle loads by persistent id, before torch allocates
anything. The unpickler is the real one (in C), so the walk is fast and follows the pickle
exactly as ``torch.load`` will. No torch here.

What the pickle builds without asking for memory, and the work its shared objects would cost, are
bounded before this scan runs: :func:`.pickle_steps.count_steps` walks the opcodes without building
anything.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import IO, Any

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
    globals: list[str] = field(default_factory=list)  # every "module.name" the pickle looks up, in order

    @property
    def allocated(self) -> int:
        return sum(n for _, n in self.allocations)


class ScanError(ValueError):
    """The pickle is malformed (a bad opcode, a truncated argument, a value where none can be)."""


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


class _StandIn:
    """What the pickle gets instead of a global. Calling it (REDUCE, NEWOBJ) records the request and
    returns an inert instance; building and filling one (BUILD, SETITEMS, APPENDS) does nothing."""

    global_name = ""
    facts: PickleFacts

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls.global_name == "torch.Size" and len(args) == 1 and isinstance(args[0], tuple):
            return args[0]  # a shape, kept so a constructor given one can be measured
        unit = _allocation_unit(cls.global_name)
        if unit is not None and args:
            count = _product(args)
            if count:
                cls.facts.allocations.append((cls.global_name, count * unit))
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def add(self, value: Any) -> None:
        pass


class _Recorder(pickle.Unpickler):
    def __init__(self, stream: IO[bytes], facts: PickleFacts):
        super().__init__(stream, encoding="utf-8")
        self.facts = facts
        self.stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> type:
        full = f"{module}.{name}"
        if full not in self.stand_ins:
            self.facts.globals.append(full)
            self.stand_ins[full] = type(name, (_StandIn,), {"global_name": full, "facts": self.facts,
                                                            "__slots__": ()})
        return self.stand_ins[full]

    def persistent_load(self, pid: Any) -> Any:
        if (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], type)
                and issubclass(pid[1], _StandIn) and isinstance(pid[4], int)):
            ref = StorageRef(str(pid[2]), pid[1].global_name, str(pid[3]), pid[4])
            self.facts.storages.setdefault(ref.key, ref)
        return None


def scan(stream: IO[bytes], facts: PickleFacts | None = None) -> PickleFacts:
    """Read one pickle from ``stream`` (up to its STOP) with stand-ins; add what it asks for to ``facts``."""
    facts = facts if facts is not None else PickleFacts()
    try:
        _Recorder(stream, facts).load()
    except RecursionError:
        raise ScanError("the pickle nests too deeply") from None
    except Exception as exc:  # whatever the unpickler finds wrong: the file is damaged
        raise ScanError(str(exc) or type(exc).__name__) from None
    return facts
