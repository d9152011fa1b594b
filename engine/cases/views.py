"""What the engine's front door hands out: views of cases and tasks, and value helpers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar
from uuid import UUID

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from sqlalchemy import Row, Select, or_, select

from engine.pack.forms import FormCatalogue
from engine.runtime.clock import SERVICE_TZ
from engine.runtime.spiff import (
    IdSource,
    ProcessSpecs,
)
from engine.store.files import AttachmentView
from engine.store.models import (
    Attachment,
    Case,
    HumanTask,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_Q = TypeVar("_Q", bound="Select[*tuple[Any, ...]]")

END_OF_DAY = time(18, 0, tzinfo=SERVICE_TZ)

WORKFLOW_EVENTS = ("case_started", "task_completed", "timer_fired", "case_terminated",
                   "case_migrated", "case_migration_reverted", "message_received",
                   "job_completed", "deadlines_moved")

MIGRATION_EVENTS = ("case_migrated", "case_migration_reverted")

TASK_ORDERS = ("due", "age")
COMMENT_ROLES = ("agent", "leader", "office")
COMMENT_MAX = 2000

@dataclass(frozen=True)
class TaskView:
    """A human task as inboxes and forms show it."""

    id: str
    case_id: int
    case_title: str
    process_id: str
    spec_name: str
    title: str
    department: str | None
    assignee: str | None
    state: str
    version: int
    form: str | None
    item_code: str | None
    item_name: str | None
    phase: str | None
    stage: str | None
    due_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    completed_by: str | None
    green_channel: bool = False

@dataclass(frozen=True)
class CommentView:
    """A comment left on a case or one of its tasks (an audited case event)."""

    seq: int
    case_id: int
    task_id: str | None
    text: str
    author: str
    at: datetime


@dataclass(frozen=True)
class CaseView:
    """A case's status and data."""

    id: int
    process_id: str
    process_version_id: int
    title: str
    project_code: str | None
    status: str
    state_version: int
    data: dict[str, Any]
    started_by: str
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    # Filled by the commands that change the workflow, from what they already hold, so a
    # caller can answer without reading the case again: its open tasks after the command,
    # the departments that hold or held a task in it, and the task the command completed.
    open_tasks: tuple[TaskView, ...] | None = None
    departments: frozenset[str] | None = None
    completed_task: TaskView | None = None

@dataclass
class LoadResult:
    """What loading a pack did: versions created, and versions already present."""

    created: list[tuple[str, int]] = field(default_factory=list)
    unchanged: list[tuple[str, int]] = field(default_factory=list)

@dataclass
class LiveCase:
    """A case's workflow held in memory between commands."""

    workflow: BpmnWorkflow
    ids: IdSource
    state_version: int
    event_seq: int
    snapshot_seq: int
    # Departments that hold or held a task in the case (None: not known yet, read on need).
    departments: set[str] | None = None
    # The case's stored timers (task id -> (timer name, due)) as this process last wrote them.
    timers: dict[str, tuple[str, datetime]] | None = None
    # The case's stored element rows (process id, BPMN id) and their version, as last written.
    elements: set[tuple[str, str]] | None = None
    elements_version: int | None = None
    # Ids of the case's open (ready) task rows after the last command this process ran.
    open_tasks: set[str] | None = None
    # Caught up with the events another process added: the timers, element rows and open
    # tasks stored for the case are the ones its workflow implies as it stands, worked out
    # (instead of read) before the next command changes it.
    caught_up: bool = False

@dataclass(frozen=True)
class VersionSpecs:
    """What the engine keeps in memory of a stored process version."""

    id: int
    process_id: str
    specs: ProcessSpecs
    task_specs: dict[str, dict[str, Any]]
    forms: FormCatalogue

@dataclass(frozen=True)
class TaskDetail:
    """A ready or finished task with what its form needs."""

    task: TaskView
    form_schema: dict[str, Any] | None
    ui_schema: dict[str, Any] | None
    instructions: str
    data: dict[str, Any]
    draft: dict[str, Any] | None

@dataclass(frozen=True)
class StartForm:
    """The form a new case of a process is registered with (see loader.start_form_files)."""

    process_id: str
    name: str
    schema: dict[str, Any]
    ui_schema: dict[str, Any] | None

@dataclass(frozen=True)
class TaskCounts:
    """How many open tasks an inbox holds, by state."""

    ready: int
    claimed_by_me: int
    overdue: int

@dataclass(frozen=True)
class Verification:
    """The result of checking a case's chain and re-executing it."""

    case_id: int
    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str | None = None

def task_view(row: HumanTask | Row[*tuple[Any, ...]], case_title: str = "") -> TaskView:
    """A task from its index row (an ORM object, or a row of the task list's columns)."""
    return TaskView(
        id=row.id, case_id=row.case_id, case_title=case_title, process_id=row.process_id,
        spec_name=row.spec_name, title=row.title, department=row.department,
        assignee=row.assignee, state=row.state, version=row.version, form=row.form,
        item_code=row.item_code, item_name=row.item_name, phase=row.phase, stage=row.stage,
        due_at=row.due_at, created_at=row.created_at, completed_at=row.completed_at,
        completed_by=row.completed_by, green_channel=bool(row.green_channel))

def open_task_views(rows: Iterable[HumanTask], case_title: str) -> tuple[TaskView, ...]:
    """A case's open tasks in the inbox's order: soonest due first, undated ones last."""
    def key(row: HumanTask) -> tuple[bool, datetime, datetime, str]:
        return (row.due_at is None, row.due_at or row.created_at, row.created_at, row.id)

    return tuple(task_view(row, case_title) for row in sorted(rows, key=key))

def case_view(case: Case, **answer: Any) -> CaseView:
    return CaseView(
        id=case.id, process_id=case.process_id, process_version_id=case.process_version_id,
        title=case.title, project_code=case.project_code, status=case.status,
        state_version=case.state_version, data=case.data, started_by=case.started_by,
        started_at=case.started_at, updated_at=case.updated_at, ended_at=case.ended_at,
        end_reason=case.end_reason, **answer)

def attachment_view(row: Attachment) -> AttachmentView:
    return AttachmentView(
        id=row.id, case_id=row.case_id, task_id=row.task_id, material=row.material,
        filename=row.filename, content_type=row.content_type, size=row.size,
        sha256=row.sha256, uploaded_by=row.uploaded_by, uploaded_at=row.uploaded_at)

def task_filters(query: _Q, *, department: str | None, assignee: str | None,
                  case_id: int | None, states: Iterable[str], phase: str | None,
                  item_code: str | None, due_before: datetime | None,
                  open_to: str | None, green_only: bool = False,
                  process_id: str | None = None, stage: str | None = None) -> _Q:
    query = query.where(HumanTask.state.in_(tuple(states)))
    if process_id is not None:
        query = query.where(HumanTask.process_id == process_id)
    if stage is not None:
        query = query.where(HumanTask.stage == stage)
    if green_only:
        query = query.where(HumanTask.green_channel.is_(True))
    if department is not None:
        query = query.where(HumanTask.department == department)
    if assignee is not None:
        query = query.where(HumanTask.assignee == assignee)
    if open_to is not None:
        query = query.where(or_(HumanTask.assignee.is_(None), HumanTask.assignee == open_to))
    if case_id is not None:
        query = query.where(HumanTask.case_id == case_id)
    if phase is not None:
        query = query.where(HumanTask.phase == phase)
    if item_code is not None:
        query = query.where(HumanTask.item_code == item_code)
    if due_before is not None:
        query = query.where(HumanTask.due_at < due_before)
    return query

def case_filters(query: _Q, search: str | None, statuses: Iterable[str],
                  department: str | None = None) -> _Q:
    query = query.where(Case.status.in_(tuple(statuses)))
    if department is not None:
        query = query.where(Case.id.in_(select(HumanTask.case_id).where(
            HumanTask.department == department)))
    text = (search or "").strip()
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(or_(Case.title.like(f"%{escaped}%", escape="\\"),
                                Case.project_code.like(f"{escaped}%", escape="\\")))
    return query

def plain_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Task data as JSON-ready plain data (dates become ISO strings)."""
    result: dict[str, Any] = json.loads(json.dumps(data, default=json_default))
    return result

def json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"value of type {type(value).__name__} cannot be stored in case data")

def parse_due(value: Any) -> datetime | None:
    """Turn a due-date expression's result (ISO date or datetime) into a UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, END_OF_DAY)
    else:
        text = str(value)
        moment = (datetime.combine(date.fromisoformat(text), END_OF_DAY) if len(text) == 10
                  else datetime.fromisoformat(text))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SERVICE_TZ)
    return moment.astimezone(UTC)
