"""Timing the front door's commands for the hooks that want it (metrics, structured logs)."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

from engine.hooks import CommandDone

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "_zerorun_command"


def command(name: str | None = None) -> Callable[[F], F]:
    """Mark a front-door method as a command (one transaction that changes cases or process
    versions): `instrument` times it for the hooks, by `name` (the method's by default)."""

    def mark(method: F) -> F:
        setattr(method, _MARK, name or method.__name__)
        return method

    return mark


def command_names(cls: type) -> dict[str, str]:
    """The commands of `cls`: method name -> the name metrics and logs use."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            name = getattr(value, _MARK, None)
            if isinstance(name, str):
                found[attr] = name
    return found


def instrument(cls: type) -> type:
    """Wrap each method of `cls` marked `@command` so that `hooks.command_done` hears of it."""
    for method_name, name in command_names(cls).items():
        setattr(cls, method_name, _timed(name, getattr(cls, method_name)))
    return cls


def _timed(command: str, method: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        hooks = self.hooks.command_done
        if not hooks:
            return method(self, *args, **kwargs)
        started = time.perf_counter()
        try:
            result = method(self, *args, **kwargs)
        except BaseException as exc:
            _tell(hooks, command, started, type(exc).__name__,
                  signature.bind_partial(self, *args, **kwargs).arguments, None)
            raise
        _tell(hooks, command, started, "ok",
              signature.bind_partial(self, *args, **kwargs).arguments, result)
        return result

    return wrapper


def _tell(hooks: list[Callable[[CommandDone], None]], command: str, started: float,
          outcome: str, arguments: dict[str, Any], result: Any) -> None:
    seconds = time.perf_counter() - started
    case_id = arguments.get("case_id")
    if case_id is None and result is not None:
        case_id = getattr(result, "case_id", None)
        if case_id is None and command not in ("store_pack", "start_cases"):
            case_id = getattr(result, "id", None)
    task_id = arguments.get("task_id")
    actor = arguments.get("actor")
    done = CommandDone(command, seconds, outcome,
                       case_id if isinstance(case_id, int) else None,
                       task_id if isinstance(task_id, str) else None,
                       getattr(actor, "username", None))
    for hook in hooks:
        hook(done)
