"""Python's cyclic garbage collector held off while plain data is built in bulk.

Reading a header of a million tensors, planning a million keys or listing a million output
entries allocates millions of small dicts, tuples and strings that hold no reference cycles.
Each time the number of long-lived objects grows by a quarter, CPython walks every tracked
object looking for cycles; across a 1M-tensor header that was about 45 % of a conversion
(measured in docs/performance.md). Inside :func:`gc_paused` no collection runs. Reference
counting still frees everything as usual; only cycles wait, and the collector's previous state
comes back on exit. Code that may create cycles holding large buffers (torch tensors) is never
run inside it: only header-only work is.
"""
from __future__ import annotations

import functools
import gc
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable cyclic collection inside the block; restore what was there before (nesting is fine)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def pauses_gc(function: F) -> F:
    """Decorator: run ``function`` inside :func:`gc_paused`."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with gc_paused():
            return function(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
