"""Keeping a case's message waits and external jobs in line with its workflow.

Called from the unit of work after every change (engine/cases/store.py), so callers
find who waits for a message, or which service tasks a worker may fetch, without
loading any case (see engine/cases/interactions.py for the commands).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.cases.views import VersionSpecs
from engine.errors import WorkflowError
from engine.runtime import expressions
from engine.runtime.spiff import ExternalTask
from engine.store.models import Case, ExternalJob, MessageWait


def message_definitions(definition: Any) -> list[MessageEventDefinition]:
    """The message definitions an element waits for (several behind an event-based gateway)."""
    if isinstance(definition, MessageEventDefinition):
        return [definition]
    return [d for d in getattr(definition, "event_definitions", None) or []
            if isinstance(d, MessageEventDefinition)]


_KINDS: dict[int, tuple[object, bool, bool]] = {}


def _uses(version: VersionSpecs) -> tuple[bool, bool]:
    """Whether a version has message catch elements, and external service tasks (kept per
    loaded spec object, so cases of versions without either cost no query)."""
    found = _KINDS.get(id(version.specs))
    if found is None or found[0] is not version.specs:
        specs = [version.specs.process_spec, *version.specs.subprocess_specs.values()]
        elements = [t for p in specs for t in p.task_specs.values()]
        found = (version.specs,
                 any(message_definitions(getattr(t, "event_definition", None))
                     for t in elements),
                 any(isinstance(t, ExternalTask) for t in elements))
        _KINDS[id(version.specs)] = found
    return found[1], found[2]


def sync_interactions(functions: Mapping[str, Any], s: Session, case: Case, version: VersionSpecs,
                      workflow: BpmnWorkflow, now: datetime) -> None:
    """Bring the message waits and external jobs of a case in line with its workflow."""
    messages_used, jobs_used = _uses(version)
    if messages_used:
        _sync_waits(functions, s, case, version, workflow)
    if jobs_used:
        _sync_jobs(s, case, version, workflow, now)


def _sync_waits(functions: Mapping[str, Any], s: Session, case: Case, version: VersionSpecs,
                workflow: BpmnWorkflow) -> None:
    waits: dict[tuple[str, str], MessageWait] = {}
    for task in workflow.event_manager.tasks.values():
        if task.state != TaskState.WAITING:
            continue
        messages = message_definitions(getattr(task.task_spec, "event_definition", None))
        if not messages:
            continue
        process_id = task.workflow.spec.name
        element = task.task_spec.bpmn_id or task.task_spec.name
        meta = version.task_specs.get(f"{process_id}:{element}", {})
        key = _evaluated(functions, meta.get("correlation_key"), task, "correlation key")
        department = meta.get("department")
        if meta.get("department_expression"):
            department = _evaluated(functions, meta["department_expression"], task,
                                    "sender department")
        # An event-based gateway waits for several messages at once: the first one wins.
        for name in sorted({m.name for m in messages}):
            waits[(str(task.id), name)] = MessageWait(
                task_id=str(task.id), case_id=case.id, message=name, element=element,
                process_id=process_id, correlation_key=key,
                department=None if department is None else str(department)[:64])
    stored = {(w.task_id, w.message): w for w in s.scalars(select(MessageWait).where(
        MessageWait.case_id == case.id))}
    for pair, row in stored.items():
        if pair not in waits:
            s.delete(row)
    for pair, wait in waits.items():
        if pair not in stored:
            s.add(wait)


def _evaluated(functions: Mapping[str, Any], expression: str | None, task: Any, what: str
               ) -> str | None:
    """The value of a waiting element's expression, as text (None: no expression, or None).

    What goes wrong in it (a name the data lacks, a missing key...) is the diagram's or the
    data's fault: a WorkflowError (422), so the command that made the element wait is
    refused and rolled back, never a 500."""
    if not expression:
        return None
    try:
        value = expressions.evaluate(expression, task.data, functions)
    except (ValueError, LookupError, TypeError, ArithmeticError, NameError, AttributeError,
            RecursionError) as exc:
        raise WorkflowError(f"the {what} {expression!r} of "
                            f"{task.task_spec.bpmn_name or task.task_spec.name} failed: {exc}"
                            ) from exc
    return None if value is None else str(value)[:200]


def _sync_jobs(s: Session, case: Case, version: VersionSpecs, workflow: BpmnWorkflow,
               now: datetime) -> None:
    started = {str(t.id): t for t in workflow.get_tasks(state=TaskState.STARTED)
               if isinstance(t.task_spec, ExternalTask)}
    jobs = {j.id: j for j in s.scalars(select(ExternalJob).where(
        ExternalJob.case_id == case.id, ExternalJob.state.in_(("open", "incident"))))}
    for job_id, job in jobs.items():
        if job_id not in started:
            job.state, job.worker_id, job.locked_until = "cancelled", None, None
    for task_id, task in started.items():
        if task_id in jobs:
            continue
        process_id = task.workflow.spec.name
        element = task.task_spec.bpmn_id or task.task_spec.name
        meta = version.task_specs.get(f"{process_id}:{element}", {})
        if s.get(ExternalJob, task_id) is None:
            s.add(ExternalJob(id=task_id, case_id=case.id, process_id=process_id,
                              element=element, topic=str(meta.get("topic") or element),
                              state="open", retries=meta.get("retries", 3),
                              created_at=now))
