"""What a diagram may read of its own case beyond its task's data.

A call activity's instance gets a copy of its parent's data when it starts, so an
instance never sees what its siblings (or other branches) recorded since. A diagram
that must wait for them (an approval item waiting for its prerequisites) asks
`case_values(task_name, variable)`: the values `variable` took in every completed task
named `task_name`, anywhere in the case. The answer depends only on the case's own
state, and commands record it like every function answer (engine/runtime/recorded.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

_running: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
    "zerorun_running_task", default=None)


@contextlib.contextmanager
def running(task: Task | None) -> Iterator[None]:
    """Make `task` the task whose script or expression is being evaluated."""
    token = _running.set(task)
    try:
        yield
    finally:
        _running.reset(token)


def case_values(task_name: str, variable: str) -> list[Any]:
    """The values of `variable` in the completed tasks named `task_name` of the case."""
    task = _running.get()
    if task is None:
        raise LookupError("case_values is only answered while a case runs")
    top = task.workflow.top_workflow
    values: list[Any] = []
    for workflow in (top, *top.subprocesses.values()):
        for other in workflow.tasks.values():
            if (other.task_spec.name == task_name and other.state == TaskState.COMPLETED
                    and variable in other.data):
                values.append(copy.deepcopy(other.data[variable]))
    return values


FUNCTIONS: dict[str, Callable[..., Any]] = {"case_values": case_values}


class KnowsRunningTask:
    """Script-engine mixin: every expression and script runs with its task known, so
    `case_values` reads the case the task belongs to."""

    def evaluate(self, task: Any, expression: str,
                 external_context: Mapping[str, Any] | None = None) -> Any:
        with running(task):
            return super().evaluate(task, expression, external_context)  # type: ignore[misc]

    def execute(self, task: Any, script: str,
                external_context: Mapping[str, Any] | None = None) -> Any:
        with running(task):
            return super().execute(task, script, external_context)  # type: ignore[misc]
