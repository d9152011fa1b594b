"""Answers of the reference functions, written into the events that asked for them.

Diagrams call functions over reference data (`working_days_after`, `catalogue_item`,
`eligible_policies`, `warning_dates`...). That data changes: a new year's holidays are
added to the calendar, an item's time limit is revised. Re-executing an old case must
still give what happened then, so a command records every answer it got, in order, in
its event, and a re-execution is served those answers instead of asking the data again,
after checking that the process asks the same questions in the same order.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from engine.errors import WorkflowError


class _Calls:
    """The calls of one command: being recorded, or being served from an event."""

    def __init__(self, recorded: list[dict[str, Any]] | None) -> None:
        self.made: list[dict[str, Any]] = []
        self.recorded = recorded
        self.position = 0


_current: contextvars.ContextVar[_Calls | None] = contextvars.ContextVar(
    "zerorun_recorded_calls", default=None)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def wrap(functions: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The functions, answering from the recording in force (if any)."""
    return {name: _wrapped(name, function) for name, function in functions.items()}


def _wrapped(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        calls = _current.get()
        if calls is None:
            return function(*args, **kwargs)
        asked = {"function": name, "args": _plain(list(args)), "kwargs": _plain(kwargs)}
        if calls.recorded is not None:
            if calls.position >= len(calls.recorded):
                raise WorkflowError(f"the process called {name}{tuple(args)!r}, which the "
                                    "recorded event never answered")
            answer = calls.recorded[calls.position]
            calls.position += 1
            if {k: answer.get(k) for k in asked} != asked:
                raise WorkflowError(
                    f"the process called {name}{tuple(args)!r} where the recorded event "
                    f"answered {answer.get('function')}{tuple(answer.get('args') or ())!r}")
            return copy.deepcopy(answer.get("result"))
        result = function(*args, **kwargs)
        calls.made.append({**asked, "result": _plain(result)})
        return result

    return call


@contextlib.contextmanager
def record() -> Iterator[list[dict[str, Any]]]:
    """Record the answers of the functions called inside the block (a live command)."""
    calls = _Calls(None)
    token = _current.set(calls)
    try:
        yield calls.made
    finally:
        _current.reset(token)


@contextlib.contextmanager
def served(recorded: list[dict[str, Any]] | None) -> Iterator[None]:
    """Serve the recorded answers inside the block (a re-execution); with None (an event
    recorded before answers were kept) the functions are asked again."""
    if recorded is None:
        yield
        return
    calls = _Calls(recorded)
    token = _current.set(calls)
    try:
        yield
        if calls.position != len(recorded):
            raise WorkflowError(f"the recorded event answered {len(recorded)} calls but the "
                                f"process asked only {calls.position}")
    finally:
        _current.reset(token)
