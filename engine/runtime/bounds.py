"""Bounds on what the safe interpreter may spend and produce: time, data size, loop scoping."""

from __future__ import annotations

import ast
import contextlib
import contextvars
import time
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

# Size of the data one script or expression produces, counted as stored: characters of
# text plus one per scalar and per container entry, a shared value as often as it is
# reachable (that is how it would be serialized).
MAX_DATA_SIZE = 5_000_000
MAX_DATA_NESTING = 100  # levels of lists and dicts inside one value
# All the scripts and expressions one command runs (a completion, a timer) together.
MAX_COMMAND_SECONDS = 5.0


def cpu_seconds() -> float:
    """The clock the time bounds are measured on: the thread's own CPU time. A busy machine
    (other processes, the worker's other threads) then never cuts off a script that fits
    its bound, and re-running a recorded event (a replay, a process catching up) does what
    its command did instead of failing when the machine is loaded."""
    return time.thread_time()


class UnsafeExpression(ValueError):
    """An expression or script uses something outside the allowed subset."""

    def __init__(self, message: str, lineno: int | None = None, col: int | None = None) -> None:
        where = f" (line {lineno})" if lineno else ""
        super().__init__(message + where)
        self.message = message
        self.lineno = lineno
        self.col = col


class ExpressionLimitExceeded(UnsafeExpression):
    """An evaluation went past a bound on time, steps or size."""


def where(node: ast.AST) -> dict[str, Any]:
    """Line and column of a syntax node, as the exceptions take them."""
    return {"lineno": getattr(node, "lineno", None), "col": getattr(node, "col_offset", None)}


_DEADLINE: contextvars.ContextVar[tuple[float, str] | None] = contextvars.ContextVar(
    "zerorun_expression_deadline", default=None)


@contextlib.contextmanager
def time_budget(seconds: float | None = None) -> Iterator[None]:
    """Bound the time of all the scripts and expressions run inside the block, together."""
    seconds = MAX_COMMAND_SECONDS if seconds is None else seconds
    deadline = cpu_seconds() + seconds
    outer = _DEADLINE.get()
    if outer is not None and outer[0] <= deadline:
        yield
        return
    token = _DEADLINE.set((deadline, f"the scripts and rules of one command took more than "
                                     f"{seconds:g} s"))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@dataclass
class LoopScoping:
    """Whether names first bound inside a for loop are dropped after it, and whether any were.

    Loop variables and the names a loop body introduces (`for code in ...: entry = ...`)
    are the script's scratch values, not case data. Events recorded before this rule
    re-execute without it (see engine/cases/workflow.py), so stored cases still verify.
    """

    enabled: bool = True
    dropped: bool = False


_SCOPING: contextvars.ContextVar[LoopScoping | None] = contextvars.ContextVar(
    "zerorun_loop_scoping", default=None)


@contextlib.contextmanager
def loop_scoping(enabled: bool) -> Iterator[LoopScoping]:
    """Run the scripts inside the block with (or without) loop-local names."""
    scoping = LoopScoping(enabled)
    token = _SCOPING.set(scoping)
    try:
        yield scoping
    finally:
        _SCOPING.reset(token)


def active_loop_scoping() -> LoopScoping | None:
    """The loop scoping set by an enclosing block, if any."""
    return _SCOPING.get()


_DATA_SCALARS = (str, int, float, bool, type(None), datetime, date, UUID)
_VIEWS = (KeysView, ValuesView, ItemsView)


class _BadData(Exception):  # noqa: N818 - carries the path up to where it is reported
    def __init__(self, message: str, limit: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.path: list[Any] = []


class _Sizer:
    """Measures values as they would be stored; shared values count each time reachable."""

    def __init__(self, stored: bool, limit: int = MAX_DATA_SIZE) -> None:
        self.stored = stored  # storing: only plain data; otherwise views may be read too
        self.limit = limit
        self.total = 0
        self._memo: dict[int, int] = {}
        self._active: set[int] = set()

    def measure(self, value: Any, name: str, node: ast.AST | None = None) -> None:
        """Add a value's size to the total; refuse it where it is not data or too large."""
        try:
            self.total += self._size(value, 0)
            if self.total > self.limit:
                raise _BadData("", limit=True)
        except _BadData as exc:
            place = name + "".join(f"[{key!r}]" for key in reversed(exc.path))
            located = where(node) if node is not None else {}
            if exc.limit:
                raise ExpressionLimitExceeded(
                    f"{place} is too large: the data a script or expression produces may "
                    f"hold at most {self.limit:,} characters and entries (a value used several "
                    "times counts each time)", **located) from None
            raise UnsafeExpression(f"{place} {exc.message}", **located) from None

    def _size(self, value: Any, depth: int) -> int:
        if isinstance(value, str):
            return len(value) + 1
        if isinstance(value, _DATA_SCALARS):
            return 1
        key = id(value)
        known = self._memo.get(key)
        if known is not None:
            return known
        if key in self._active:
            raise _BadData("contains itself: a circular structure cannot be stored")
        if depth >= MAX_DATA_NESTING:
            raise _BadData(f"is nested more than {MAX_DATA_NESTING} levels deep")
        entries: Iterable[tuple[Any, Any]]
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, (str, int, float, bool, type(None))):
                    raise _BadData(f"has a key of type {type(name).__name__}; keys must be "
                                   "text or numbers")
            entries = value.items()
        elif isinstance(value, (list, tuple, set, frozenset)) or (
                not self.stored and isinstance(value, _VIEWS)):
            entries = enumerate(value)
        else:
            hint = " (use list(...) to keep it)" if isinstance(value, _VIEWS) else ""
            raise _BadData(f"is a {type(value).__name__}, which is not data: only text, "
                           f"numbers, true/false, None, lists and dicts can be kept{hint}")
        self._active.add(key)
        total = 1
        for name, child in entries:
            try:
                total += self._size(child, depth + 1) + (
                    len(name) if isinstance(name, str) else 0)
            except _BadData as exc:
                exc.path.append(name)
                raise
            if total > self.limit:
                raise _BadData("", limit=True)
        self._active.discard(key)
        self._memo[key] = total
        return total


def check_data(values: Mapping[str, Any], limit: int = MAX_DATA_SIZE) -> int:
    """Refuse data that cannot be stored: non-data values, circles, too large; its size."""
    sizer = _Sizer(stored=True, limit=limit)
    for name, value in values.items():
        sizer.measure(value, str(name))
    return sizer.total


def measured(node: ast.AST, *values: Any) -> int:
    """The size of values an operation is about to walk (bounded, so a walk is too)."""
    sizer = _Sizer(stored=False)
    for value in values:
        sizer.measure(value, "a value used here", node)
    return sizer.total


# Hash collisions ------------------------------------------------------------------------

MAX_SAME_HASH = 64  # different keys of one set or dict that may share a hash value


def distinct_hashes(keys: Iterable[Any]) -> None:
    """Refuse keys built to share hash values before a set or dict is built of them.

    Inserting n different keys with one hash value costs n*n/2 comparisons inside one
    C-level call (`set(L)`), which no time check can interrupt: 30,000 multiples of
    2**61-1 took 6 s against a 1 s bound. Real data never has more than a handful of
    different keys per hash value; this pass is linear, with at most MAX_SAME_HASH
    comparisons per key."""
    keys = keys if isinstance(keys, (list, tuple)) else list(keys)
    if len(keys) <= MAX_SAME_HASH:
        return
    buckets: dict[int, list[Any]] = {}
    for key in keys:
        try:
            bucket = buckets.setdefault(hash(key), [])
        except TypeError:
            return  # unhashable: building the set or dict raises its own clear error
        if key not in bucket:
            bucket.append(key)
            if len(bucket) > MAX_SAME_HASH:
                raise ExpressionLimitExceeded(
                    f"more than {MAX_SAME_HASH} different values of this set or dict share "
                    "one hash value (a collection built to be slow)")


def keys_of_pairs(value: Any) -> list[Any]:
    if isinstance(value, Mapping) or not isinstance(value, (list, tuple)):
        return []
    return [pair[0] for pair in value if isinstance(pair, (list, tuple)) and len(pair) == 2]


def set_of(*args: Any) -> set[Any]:
    if args and not isinstance(args[0], (dict, str)):
        args = (list(args[0]) if not isinstance(args[0], (list, tuple)) else args[0],
                *args[1:])
        distinct_hashes(args[0])
    return set(*args)


def dict_of(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    if args:
        distinct_hashes(keys_of_pairs(args[0]))
    return dict(*args, **kwargs)


def hash_checked(keys: list[Any], node: ast.AST) -> None:
    """distinct_hashes, the refusal naming where in the script it happened."""
    try:
        distinct_hashes(keys)
    except ExpressionLimitExceeded as exc:
        raise ExpressionLimitExceeded(exc.message, **where(node)) from None


def sum_numbers(values: Iterable[Any], start: Any = 0) -> Any:
    """sum() for numbers only."""
    # sum() over lists or tuples copies the running total at every step (quadratic, in
    # one builtin call the time bound cannot interrupt): numbers only.
    if not isinstance(start, (int, float)) or isinstance(start, bool):
        raise UnsafeExpression("sum() adds numbers only; to join lists use a comprehension "
                               "or +, to join text use ''.join(...)")
    total = start
    for value in values:
        if not isinstance(value, (int, float)):
            raise TypeError(f"sum() adds numbers only, not {type(value).__name__}")
        total += value
    return total
