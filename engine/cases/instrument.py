"""Timing the front door's commands for the hooks that want it (metrics, structured logs)."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

from engine.hooks import CommandDone

# Engine methods that change cases or process versions, by the name metrics and logs use.
COMMANDS = {
    "store_pack": "store_pack", "start_case": "start_case", "start_cases": "start_cases",
    "complete_task": "complete_task", "complete_for": "complete_for",
    "claim_task": "claim_task",
    "release_task": "release_task", "save_draft": "save_draft",
    "record_case_event": "record_case_event", "terminate_case": "terminate_case",
    "add_attachment": "add_attachment", "migrate_case": "migrate_case",
    "revert_migration": "revert_migration", "_fire_case_timers": "fire_timers",
}


def instrument(cls: type) -> type:
    """Wrap each command method of `cls` so that `hooks.command_done` hears of it."""
    for method_name, command in COMMANDS.items():
        setattr(cls, method_name, _timed(command, getattr(cls, method_name)))
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
