"""Walking a pickle's opcodes without building anything, to refuse one that would cost too much.

Two costs a few bytes of pickle can ask for, both checked before any unpickler runs:

- **objects**: each opcode can make one (15 million ``EMPTY_LIST`` are 15 KB deflated and
  gigabytes unpickled), so the opcodes are counted against a limit; and a memo index no pickler
  writes is refused (the C unpickler sizes its memo table by the largest index: 9 bytes can ask
  for gigabytes);
- **work on shared objects**: the memo lets a pickle use one object many times, so
  ``t = (t, t)`` twenty times over is 40 opcodes and a tuple of a million parts. Hashing a tuple
  (as a dict key or a set member) or printing it visits every part every time it appears, in
  one C call that no signal interrupts: a 75-byte pickle that uses such a tuple as a key keeps
  an unpickler busy for longer than the universe has existed. The walk therefore follows the
  unpickler's stack with each object's *size*, the number of parts it has when every shared part
  is counted each time it appears, and refuses an object larger than the limit, or more hashing
  in all (the sizes of every key and member hashed) than the limit. A container counts what it
  was filled with, through every reference to it. The limit grows with the opcodes read: without
  sharing, no object has more parts than the pickle has opcodes before it, so a pickle written by
  ``pickle.dump`` from a tree of objects is never refused, however large.

Anything malformed ends the walk quietly: the unpickler that follows says what is wrong.
"""
from __future__ import annotations

import pickletools
from typing import IO


SIZE_FLOOR = 1 << 17  # the size limit of a small pickle: an object of 131,072 parts hashes in milliseconds


class StepBudgetError(Exception):
    """The pickle would cost more than its budget allows (:func:`count_steps`); ``str`` says what."""


class SharingError(StepBudgetError):
    """The pickle uses objects so many times over that hashing or printing them would not end: no
    pickle written from a tree of objects does that, so no option lifts it."""


# What each opcode does to the stack, in the walk: (effect, items taken below any mark)
_PUSH, _NONE, _MARK, _GET, _PUT, _MAKE, _MAKE_MARKED, _FILL, _FILL_MARKED, _POP, _POP_MARK, _DUP, _STOP, _EMPTY = (
    "push", "none", "mark", "get", "put", "make", "make-marked", "fill", "fill-marked", "pop", "pop-mark", "dup", "stop",
    "empty")
_EMPTIES = {"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"}  # a container to be filled
_IMMUTABLE = {"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "FROZENSET", "STACK_GLOBAL"}  # made whole: an int size
_FILLS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # the first item taken is filled, and stays
_HASHES = {"SETITEM": "keys", "SETITEMS": "keys", "DICT": "keys", "ADDITEMS": "all", "FROZENSET": "all"}


def _tables() -> tuple[list, list, dict[int, str]]:
    """Per opcode byte: (fixed argument bytes, bytes of a length prefix, lines of text) or None, and
    (effect, items) or None; and which opcodes hash what they take ("keys" or "all")."""
    prefixes = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
                pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}
    args: list = [None] * 256
    effects: list = [None] * 256
    hashes: dict[int, str] = {}
    special = {"MARK": (_MARK, 0), "POP": (_POP, 0), "POP_MARK": (_POP_MARK, 0), "DUP": (_DUP, 0),
               "STOP": (_STOP, 0), "MEMOIZE": (_PUT, 0), "GET": (_GET, 0), "BINGET": (_GET, 0),
               "LONG_BINGET": (_GET, 0), "PUT": (_PUT, 0), "BINPUT": (_PUT, 0), "LONG_BINPUT": (_PUT, 0)}
    for op in pickletools.opcodes:
        code = ord(op.code.encode("latin-1"))
        arg = op.arg
        if arg is None:
            args[code] = (0, 0, 0)
        elif arg.n >= 0:
            args[code] = (arg.n, 0, 0)
        elif arg.n == pickletools.UP_TO_NEWLINE:
            args[code] = (0, 0, 2 if arg.name == "stringnl_noescape_pair" else 1)
        else:
            args[code] = (0, prefixes[arg.n], 0)
        before, after = op.stack_before, op.stack_after
        marked = pickletools.markobject in before
        taken = before.index(pickletools.markobject) if marked else len(before)  # items below the mark, or all
        if op.name in special:
            effects[code] = special[op.name]
        elif op.name in _EMPTIES:
            effects[code] = (_EMPTY, 0)
        elif not before and len(after) == 1:
            effects[code] = (_PUSH, 0)
        elif not before and not after:
            effects[code] = (_NONE, 0)
        elif op.name in _FILLS:
            effects[code] = (_FILL_MARKED if marked else _FILL, taken)
        elif len(after) == 1:
            effects[code] = (_MAKE_MARKED if marked else _MAKE, taken)
        if op.name in _HASHES:
            hashes[code] = _HASHES[op.name]
    return args, effects, hashes


_ARGS, _EFFECTS, _HASHING = _tables()
_KIND = [_NONE if e is None else e[0] for e in _EFFECTS]  # per opcode byte: what it does to the stack
_TAKEN = [0 if e is None else e[1] for e in _EFFECTS]  # and how many items it takes below any mark
_NAMES = {ord(o.code.encode("latin-1")): o.name for o in pickletools.opcodes}
_CELL = [_NAMES.get(code) not in _IMMUTABLE for code in range(256)]  # whether what it makes may be filled later
_BINPUT, _MEMOIZE_OP = ord("q"), 0x94
_SIGNED = {ord("T"), 0x8B}  # BINSTRING, LONG4: a signed length
_CHUNK = 1 << 20
_MARK_ITEM = None  # a mark on the walk's stack
# What a container is on the walk's stack: a one-item list [size], shared with the memo, so that filling it
# (APPEND, SETITEM, BUILD) grows what every later reference to it, through the memo, counts. A tuple and
# a scalar are plain ints: nothing fills them.


def count_steps(stream: IO[bytes], limit: int | None, pickles: int = 1, size_limit: int | None = None) -> int:
    """Walk ``pickles`` pickles from ``stream`` opcode by opcode, building nothing; the number of opcodes.

    Raises :class:`StepBudgetError` past ``limit`` opcodes (None: no limit), at a memo index larger
    than the opcodes read so far (Python's pickler numbers its memo from 0, one entry at a time),
    or, as :class:`SharingError`, when an object's size or the hashing in all passes ``size_limit``
    (default: ``limit``; see the module doc). The stream is read a megabyte at a time, and a long
    argument is skipped as it streams past, not held.
    """
    walk = _Walk(limit, size_limit if size_limit is not None else limit, pickles)
    buf = b""
    while True:
        piece = stream.read(max(_CHUNK, len(buf)))  # doubling: a long line is copied O(1) times a byte
        buf = buf + piece if buf else piece
        pos = walk.run(buf, final=not piece)
        if walk.finished or not piece:
            return walk.steps
        buf = buf[pos:]
        while walk.skip:  # the rest of a long argument
            skipped = stream.read(min(walk.skip, _CHUNK))
            if not skipped:
                return walk.steps
            walk.skip -= len(skipped)


class _Walk:
    """The state of :func:`count_steps` between pieces of the stream."""

    def __init__(self, limit: int | None, size_limit: int | None, pickles: int):
        self.limit, self.size_limit, self.pickles = limit, size_limit, pickles
        self.steps = self.hashed = self.skip = 0
        self.finished = False
        self.stack: list = []  # each object's size (a container's in a cell); _MARK_ITEM for a mark
        self.marks: list[int] = []  # where the marks are on the stack
        self.memo: dict = {}

    def run(self, buf: bytes, final: bool) -> int:
        """Walk the whole opcodes in ``buf``; where the first one not whole in it starts (``len(buf)``
        when a long argument runs past its end: :attr:`skip` is then what is left of it). Sets
        :attr:`finished` at the last STOP, or at anything malformed (and at a truncation when ``final``)."""
        stack, marks, memo = self.stack, self.marks, self.memo
        push, recall, frm = stack.append, memo.get, int.from_bytes
        args, kinds, track = _ARGS, _KIND, self.size_limit is not None
        limit = self.limit if self.limit is not None else -1
        PUT, PUSH, GET, MARK, NONE, STOP = _PUT, _PUSH, _GET, _MARK, _NONE, _STOP  # locals: this is the hot loop
        MEMOIZE, BINPUT, SIGNED, CHUNK, MARK_ITEM = _MEMOIZE_OP, _BINPUT, _SIGNED, _CHUNK, _MARK_ITEM
        MAKE, FILL, EMPTY, taken_of, cell_of, size_limit = _MAKE, _FILL, _EMPTY, _TAKEN, _CELL, self.size_limit
        steps = self.steps
        n, pos = len(buf), 0
        while pos < n:
            start = pos
            op = buf[pos]
            pos += 1
            entry = args[op]
            if entry is None:  # no such opcode: for the unpickler to name
                self.steps, self.finished = steps, True
                return start
            fixed, prefix, lines = entry
            kind = kinds[op]
            if prefix:
                if pos + prefix > n:
                    self.steps = steps
                    return self._short(start, final)
                fixed = frm(buf[pos:pos + prefix], "little", signed=prefix == 4 and op in SIGNED)
                pos += prefix
                if fixed < 0:
                    self.steps, self.finished = steps, True
                    return start
            index = None  # the memo index of a GET or PUT
            if fixed:
                if pos + fixed <= n:
                    if kind is GET or kind is PUT:
                        index = frm(buf[pos:pos + fixed], "little")
                    pos += fixed
                elif fixed > CHUNK and not (kind is GET or kind is PUT):  # skipped as it streams past
                    self.skip, pos = fixed - (n - pos), n
                else:
                    self.steps = steps
                    return self._short(start, final)
            if lines:
                for _ in range(lines):
                    end = buf.find(b"\n", pos)
                    if end < 0:
                        self.steps = steps
                        return self._short(start, final)
                    if kind is GET or kind is PUT:
                        digits = buf[pos:end].strip()
                        index = (int(digits) if len(digits) < 40 else None) if digits.isdigit() else -1
                    pos = end + 1
            steps += 1
            if steps == limit + 1 and limit >= 0:
                self.steps = steps
                raise StepBudgetError(f"runs more than {limit:,} opcodes")
            if kind is PUT:
                if op == MEMOIZE:
                    index = len(memo)
                elif op != BINPUT and index != -1 and (index is None or index > steps):
                    _check_memo(index, steps)
                if track:
                    top = stack[-1] if stack else MARK_ITEM
                    if top is MARK_ITEM:
                        self.steps, self.finished = steps, True
                        return pos
                    memo[index] = top  # a container's cell is shared: filling it later counts here too
            elif kind is GET:
                if track:
                    push(recall(index, 1))
            elif kind is PUSH:
                if track:
                    push(1)
            elif kind is MARK:
                if track:
                    marks.append(len(stack))
                    push(MARK_ITEM)
            elif kind is STOP:
                stack.clear()
                marks.clear()
                memo.clear()
                self.pickles -= 1
                if self.pickles <= 0:
                    self.steps, self.finished = steps, True
                    return pos
            elif not track or kind is NONE:
                continue
            elif kind is EMPTY:
                push([1])
            elif kind is MAKE and len(stack) >= taken_of[op] > 0:  # TUPLE1-3, REDUCE, NEWOBJ: inline, the commonest
                size = 1
                for _ in range(taken_of[op]):
                    part = stack.pop()
                    if part.__class__ is not int:
                        if part is MARK_ITEM:  # a mark taken as an object: malformed
                            self.steps, self.finished = steps, True
                            return pos
                        part = part[0]
                    size += part
                if size > size_limit and size > steps:
                    raise self._too_large(size, steps)
                push([size] if cell_of[op] else size)
            elif (kind is FILL and taken_of[op] == 2 and len(stack) >= 2 and stack[-1] is not MARK_ITEM
                  and stack[-2] is not MARK_ITEM):  # APPEND, BUILD: inline, the commonest fills
                item = stack.pop()
                container = stack[-1]
                if container.__class__ is not int:
                    container[0] += item if item.__class__ is int else item[0]
            elif not self._apply(op, kind, steps):
                self.steps, self.finished = steps, True
                return pos
        self.steps = steps
        return pos

    def _short(self, start: int, final: bool) -> int:
        """An opcode not whole in the buffer: wait for more, or stop at the stream's end."""
        if final:
            self.finished = True
        return start

    def _apply(self, op: int, kind: str, steps: int) -> bool:
        """The stack effect of every other opcode; False where the stack does not allow it (malformed).
        ``steps``: the opcodes read so far, which the limit grows with."""
        stack, marks = self.stack, self.marks
        limit = max(self.size_limit, steps)
        if kind is _POP:
            if not stack:
                return False
            if marks and marks[-1] == len(stack) - 1:
                marks.pop()
            stack.pop()
            return True
        if kind is _DUP:
            if not stack or stack[-1] is _MARK_ITEM:
                return False
            stack.append(stack[-1])  # the same object: a container's cell too
            return True
        marked = kind is _MAKE_MARKED or kind is _FILL_MARKED or kind is _POP_MARK
        items: list = []
        if marked:
            if not marks:
                return False
            at = marks.pop()
            items = stack[at + 1:]
            del stack[at:]
            if kind is _POP_MARK:
                return True
        taken = _TAKEN[op]
        if len(stack) < taken or (marks and marks[-1] >= len(stack) - taken):
            return False
        below = stack[len(stack) - taken:] if taken else []
        del stack[len(stack) - taken:]
        filling = kind is _FILL or kind is _FILL_MARKED
        if not marked:
            items, below = (below[1:], below[:1]) if filling else (below, [])
        sizes = [x if x.__class__ is int else x[0] for x in items]
        how = _HASHING.get(op)
        if how is not None:
            self.hashed += sum(sizes[::2] if how == "keys" else sizes)
            if self.hashed > limit:
                raise SharingError(f"hashes objects of {self.hashed:,} parts in all, more than {limit:,} (it uses one "
                                   "object many times over as a key: hashing it would not end in any useful time)")
        if filling:
            container = below[0] if below else [1]
            if container.__class__ is not int:  # a list, dict, set or object: it holds what it was filled with,
                container[0] += sum(sizes)      # counted where something builds from it (a REDUCE iterates it)
            stack.append(container)
            return True
        size = 1 + sum(x if x.__class__ is int else x[0] for x in below) + sum(sizes)
        if size > limit:
            raise self._too_large(size, steps)
        stack.append([size] if _CELL[op] else size)
        return True

    def _too_large(self, size: int, steps: int) -> SharingError:
        limit = max(self.size_limit, steps)
        return SharingError(f"builds an object of {size:,} parts, more than {limit:,} (it uses objects many times "
                            "over: hashing or printing it would not end in any useful time)")


def _check_memo(index: int | None, steps: int) -> None:
    """``index`` None: a number of 40 digits or more."""
    if index is None or index > steps:
        shown = f"{index:,}" if index is not None else "of 40 digits or more"
        raise StepBudgetError(f"stores an object at memo index {shown} after only {steps:,} opcodes (the unpickler "
                              "would make a memo table that large for it; Python's pickler numbers them from 0)")
