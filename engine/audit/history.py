"""A case's history for auditors: every event with the case data it left, and the case at one step.

Everything here is rebuilt by re-executing the recorded events from the case's pinned
process version; the stored task rows only lend labels (department) to what re-execution
finds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from sqlalchemy import select

from engine.cases import CaseView, Engine
from engine.cases.views import case_view
from engine.cases.workflow import (
    ROOT_INSTANCE,
    DataReplay,
    ReplayFailed,
    item_of,
    process_instances,
    scan_tasks,
    states_by_element,
)
from engine.errors import CaseNotFound, NotFound
from engine.store.models import Case, Event, HumanTask

_MISSING = object()


@dataclass(frozen=True)
class Change:
    """One difference between the case data of two steps, at a dotted path."""

    path: str
    kind: str  # "added", "removed" or "changed"
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class TaskRef:
    """A task an event is about, or a task open at a step, as re-execution finds it."""

    id: str
    title: str
    process_id: str
    bpmn_id: str
    item_name: str | None
    department: str | None
    # The process instance the task runs in (see workflow.process_instances).
    instance: str = ROOT_INSTANCE


@dataclass(frozen=True)
class Step:
    """One event of a case with what it did to the case data."""

    seq: int
    type: str
    actor: str
    at: datetime
    data: dict[str, Any]
    prev_hash: str
    hash: str
    task: TaskRef | None
    case_data: dict[str, Any]
    changes: list[Change]

    @property
    def submitted(self) -> dict[str, Any]:
        """The form data a task completion submitted (empty for other events)."""
        value = self.data.get("data") if self.type == "task_completed" else None
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Moment:
    """The case as it was right after one event."""

    seq: int
    states: dict[str, dict[str, list[str]]]
    open_tasks: list[TaskRef]
    case_data: dict[str, Any]
    # Each process instance (the case, every called process) with its own states.
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class History:
    """A case's events with their effects, and the case at the chosen step."""

    case: CaseView
    steps: list[Step]
    moment: Moment | None
    # Where re-execution stopped: the event that could not be applied, and why.
    failed_seq: int | None = None
    failure: str | None = None

    @property
    def last_seq(self) -> int:
        return self.steps[-1].seq if self.steps else 0


def case_history(engine: Engine, case_id: int, at_seq: int | None = None) -> History:
    """Re-execute a case once, keeping each event's effect on the data and the case at `at_seq`.

    `at_seq` defaults to the last event; a step outside the case raises NotFound.
    """
    with engine.db.reading() as s:
        case = s.get(Case, case_id)
        if case is None:
            raise CaseNotFound(f"case {case_id} does not exist")
        events = list(s.scalars(select(Event).where(Event.stream == f"case:{case_id}")
                                .order_by(Event.seq)))
        version = engine._version(s, case.process_version_id)
        departments: dict[str, str | None] = {row[0]: row[1] for row in s.execute(
            select(HumanTask.id, HumanTask.department).where(HumanTask.case_id == case_id))}
        view = case_view(case)
    last = events[-1].seq if events else 0
    wanted = last if at_seq is None else at_seq
    if events and not 1 <= wanted <= last:
        raise NotFound(f"case {case_id} has steps 1 to {last}; there is no step {wanted}")
    data = DataReplay()
    steps: list[Step] = []
    moments: list[Moment] = []

    def after(event: Event, workflow: BpmnWorkflow) -> None:
        before = steps[-1].case_data if steps else {}
        data(event, workflow)
        task = _task_ref(workflow, event.data.get("task_id"), departments)
        steps.append(Step(event.seq, event.type, event.actor, event.at, event.data,
                          event.prev_hash, event.hash, task, data.data,
                          diff(before, data.data)))
        if event.seq == wanted:
            open_tasks = [_ref(t, departments) for t in scan_tasks(workflow).ready_manual]
            moments.append(Moment(event.seq, states_by_element(workflow), open_tasks,
                                  data.data, process_instances(workflow)))

    try:
        engine._reexecute(case_id, version, events, None, after)
    except ReplayFailed as exc:
        return History(view, steps, moments[0] if moments else None, exc.seq, exc.message)
    return History(view, steps, moments[0] if moments else None)


def _task_ref(workflow: BpmnWorkflow, task_id: Any, departments: dict[str, str | None]
              ) -> TaskRef | None:
    if not task_id:
        return None
    try:
        task = workflow.get_task_from_id(UUID(str(task_id)))
    except ValueError:
        return None
    return _ref(task, departments) if task is not None else None


def _ref(task: Any, departments: dict[str, str | None]) -> TaskRef:
    spec = task.task_spec
    item = item_of(task)
    return TaskRef(id=str(task.id), title=spec.bpmn_name or spec.bpmn_id or spec.name,
                   process_id=task.workflow.spec.name, bpmn_id=spec.bpmn_id or spec.name,
                   item_name=item.get("name"), department=departments.get(str(task.id)),
                   instance=str(getattr(task.workflow, "parent_task_id", None) or ROOT_INSTANCE))


def diff(before: Any, after: Any, path: str = "") -> list[Change]:
    """The changes from one JSON value to another, by dotted path (list items as [i])."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[Change] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            old, new = before.get(key, _MISSING), after.get(key, _MISSING)
            if old is _MISSING:
                changes.append(Change(sub, "added", None, new))
            elif new is _MISSING:
                changes.append(Change(sub, "removed", old, None))
            else:
                changes.extend(diff(old, new, sub))
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after) \
            and all(isinstance(v, dict) for v in before + after):
        changes = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            changes.extend(diff(old, new, f"{path}[{index}]"))
        return changes
    return [Change(path or "(data)", "changed", before, after)]
