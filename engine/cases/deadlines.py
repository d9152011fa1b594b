"""Moving deadlines: the workflow side of the `deadlines_moved` event.

A deadline lives in a scope of the workflow as data (a due date, the moments its timers wait
for). Moving it is one case event, `deadlines_moved`, naming an open task and the new values
of the names that hold the deadline. The event writes them into every unfinished task that
already holds the name in the task's own process: its embedded sub-processes up to the
called process (call activity) they belong to, never beyond it nor the top-level case, so a
sibling instance or the caller keeps its own dates. Every waiting date timer among them
waits for its moment anew, computed from its own expression over the moved data. So a
boundary timer set from `red_at` follows the moved `red_at`, a task created later from the
moved scope reads the moved due date, and a replay re-executes the same event with the same
values. Why the deadline moved (a suspended
clock, a calendar declared) is the service's business; the event carries it along unread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimeDateEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine.errors import Conflict

DEADLINES_MOVED = "deadlines_moved"


def scopes_of(task: Task) -> Iterator[Any]:
    """The task's process, innermost first: its embedded sub-processes up to and including
    the called process they run in; never the top-level case."""
    workflow = task.workflow
    while workflow is not None and workflow.parent_workflow is not None:
        yield workflow
        parent = workflow.parent_workflow.get_task_from_id(workflow.parent_task_id)
        if parent is None or isinstance(parent.task_spec, CallActivity):
            return
        workflow = workflow.parent_workflow


def moved_tasks(task: Task, names: Mapping[str, Any]) -> list[Task]:
    """The unfinished tasks of the task's scopes that hold one of the deadline's names."""
    found = [task]
    for scope in scopes_of(task):
        for other in scope.tasks.values():
            if other is task or other.state & TaskState.FINISHED_MASK:
                continue
            if any(name in other.data for name in names):
                found.append(other)
    return found


def move_deadlines(workflow: BpmnWorkflow, payload: dict[str, Any], case_id: int) -> list[Task]:
    """Apply a `deadlines_moved` event; return the tasks whose data it changed."""
    task = workflow.get_task_from_id(UUID(payload["task_id"]))
    if task is None or task.state != TaskState.READY:
        raise Conflict(f"task {payload['task_id']} is not open in case {case_id}")
    values: dict[str, Any] = dict(payload["data"])
    changed = moved_tasks(task, values)
    for other in changed:
        if other is task:
            other.data.update(values)
        else:
            other.data.update({k: v for k, v in values.items() if k in other.data})
        definition = getattr(other.task_spec, "event_definition", None)
        if (isinstance(definition, TimeDateEventDefinition) and other.state == TaskState.WAITING
                and other._get_internal_data("event_value") is not None):
            other._set_internal_data(event_value=workflow.script_engine.evaluate(
                other, definition.expression))
    return changed
