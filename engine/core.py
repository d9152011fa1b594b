"""The engine's front door: every command is one transaction over state, task index and events."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from SpiffWorkflow.bpmn.specs.defaults import EndEvent
from SpiffWorkflow.bpmn.specs.event_definitions.simple import TerminateEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Select, and_, func, or_, select, true, update
from sqlalchemy.orm import Session

from . import audit, clock, expressions, migration, recorded
from .actors import SYSTEM, Actor
from .attachments import AttachmentView, FileStore, check_upload
from .audit import GENESIS, NewEvent
from .config import Config
from .db import Database
from .errors import (
    CaseNotFound,
    CaseNotRunning,
    ChainBreak,
    Conflict,
    EngineError,
    Forbidden,
    NotFound,
    ProcessNotFound,
    TaskNotFound,
    TaskNotReady,
    WorkflowError,
)
from .forms import FormCatalogue
from .loader import (
    Pack,
    PackParser,
    ParsedProcess,
    SourceFile,
    read_pack_dir,
    start_form_files,
)
from .models import (
    Attachment,
    Case,
    CaseSnapshot,
    Department,
    Event,
    HumanTask,
    ProcessVersion,
    Timer,
)
from .reference import SERVICE_TZ, ReferenceData
from .spiff import (
    IdSource,
    ProcessSpecs,
    case_namespace,
    dump_specs,
    dump_state,
    load_specs,
    load_state,
    new_workflow,
    task_ids,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_Q = TypeVar("_Q", bound="Select[*tuple[Any, ...]]")

# Local time of the service: date-only due dates end at 18:00 Beijing time.
END_OF_DAY = time(18, 0, tzinfo=SERVICE_TZ)
WORKFLOW_EVENTS = ("case_started", "task_completed", "timer_fired", "case_terminated",
                   "case_migrated", "case_migration_reverted")
MIGRATION_EVENTS = ("case_migrated", "case_migration_reverted")
TASK_ORDERS = ("due", "age")


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


@dataclass
class LoadResult:
    """What loading a pack did: versions created, and versions already present."""

    created: list[tuple[str, int]] = field(default_factory=list)
    unchanged: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class _Live:
    """A case's workflow held in memory between commands."""

    workflow: BpmnWorkflow
    ids: IdSource
    state_version: int
    event_seq: int
    snapshot_seq: int


@dataclass(frozen=True)
class _Version:
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


def _to_view(row: HumanTask, case_title: str = "") -> TaskView:
    return TaskView(
        id=row.id, case_id=row.case_id, case_title=case_title, process_id=row.process_id,
        spec_name=row.spec_name, title=row.title, department=row.department,
        assignee=row.assignee, state=row.state, version=row.version, form=row.form,
        item_code=row.item_code, item_name=row.item_name, phase=row.phase, stage=row.stage,
        due_at=row.due_at, created_at=row.created_at, completed_at=row.completed_at,
        completed_by=row.completed_by, green_channel=bool(row.green_channel))


def _case_view(case: Case) -> CaseView:
    return CaseView(
        id=case.id, process_id=case.process_id, process_version_id=case.process_version_id,
        title=case.title, project_code=case.project_code, status=case.status,
        state_version=case.state_version, data=case.data, started_by=case.started_by,
        started_at=case.started_at, updated_at=case.updated_at, ended_at=case.ended_at,
        end_reason=case.end_reason)


def _attachment_view(row: Attachment) -> AttachmentView:
    return AttachmentView(
        id=row.id, case_id=row.case_id, task_id=row.task_id, material=row.material,
        filename=row.filename, content_type=row.content_type, size=row.size,
        sha256=row.sha256, uploaded_by=row.uploaded_by, uploaded_at=row.uploaded_at)


def _task_filters(query: _Q, *, department: str | None, assignee: str | None,
                  case_id: int | None, states: Iterable[str], phase: str | None,
                  item_code: str | None, due_before: datetime | None,
                  open_to: str | None, green_only: bool = False) -> _Q:
    query = query.where(HumanTask.state.in_(tuple(states)))
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


def _case_filters(query: _Q, search: str | None, statuses: Iterable[str],
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
    result: dict[str, Any] = json.loads(json.dumps(data, default=_json_default))
    return result


def _json_default(value: Any) -> Any:
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


class Engine:
    """Runs cases of stored process versions; the only writer of cases, tasks and events."""

    def __init__(self, config: Config, *, database: Database | None = None,
                 clock_source: Callable[[], datetime] = clock.now,
                 functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self.config = config
        self.db = database or Database(config.database_url)
        self.clock = clock_source
        self.functions = dict(functions) if functions is not None else self._default_functions()
        self.script_engine = expressions.SafeScriptEngine(functions=self.functions)
        self._cache: OrderedDict[int, _Live] = OrderedDict()
        self._versions: dict[int, _Version] = {}
        self._lock = threading.Lock()
        # Live workflows changed by the current command, cached only once it commits.
        self._local = threading.local()

    def _default_functions(self) -> dict[str, Callable[..., Any]]:
        from .reference import ReferenceData, script_functions

        # The functions read the clock in force: a command pins it to its own time and a
        # replay to the recorded event's, so re-execution computes the same dates.
        return script_functions(ReferenceData.load(self.config.data_dir), clock.now)

    # Process versions ---------------------------------------------------------------

    def department_names(self) -> dict[str, str]:
        """Lane names a pack may use for departments (codes and full names) -> code."""
        with self.db.reading() as s:
            rows = s.execute(select(Department.code, Department.name)).all()
        names = {code: code for code, _ in rows}
        names.update({name: code for code, name in rows})
        return names

    def parse_pack(self, files: list[SourceFile]) -> Pack:
        """Validate pack files without storing anything (raises InvalidProcess)."""
        return PackParser(self.department_names(), self.functions).parse(files)

    def load_processes(self, directory: Path | None = None, *, actor: Actor = SYSTEM,
                       comment: str = "loaded from the process pack") -> LoadResult:
        """Load every process of a pack folder; a content already stored creates nothing."""
        pack = self.parse_pack(read_pack_dir(directory or self.config.processes_dir))
        return self.store_pack(pack, actor=actor, comment=comment)

    def store_pack(self, pack: Pack, *, actor: Actor, comment: str,
                   publish: bool = True) -> LoadResult:
        """Store a new immutable version of each process whose content changed."""
        result = LoadResult()
        now = self.clock()
        with self.db.transaction() as s:
            for parsed in pack.processes.values():
                existing = s.scalar(select(ProcessVersion).where(
                    ProcessVersion.process_id == parsed.process_id,
                    ProcessVersion.content_hash == parsed.content_hash))
                if existing is not None:
                    result.unchanged.append((parsed.process_id, existing.number))
                    continue
                version = self._new_version(s, parsed, pack, actor, comment, now, publish)
                result.created.append((parsed.process_id, version.number))
        return result

    def _new_version(self, s: Session, parsed: ParsedProcess, pack: Pack, actor: Actor,
                     comment: str, now: datetime, publish: bool) -> ProcessVersion:
        number = (s.scalar(select(func.max(ProcessVersion.number)).where(
            ProcessVersion.process_id == parsed.process_id)) or 0) + 1
        if publish:
            s.execute(update(ProcessVersion).where(
                ProcessVersion.process_id == parsed.process_id,
                ProcessVersion.status == "published").values(status="retired"))
        version = ProcessVersion(
            process_id=parsed.process_id, name=parsed.name, number=number,
            content_hash=parsed.content_hash, status="published" if publish else "draft",
            startable=parsed.startable, author=actor.username, comment=comment,
            created_at=now, published_at=now if publish else None,
            spec=dump_specs(parsed.specs),
            sources={name: pack.sources[name] for name in parsed.files},
            task_specs=parsed.task_specs)
        s.add(version)
        s.flush()
        audit.append_ops(s, NewEvent("process_version_saved", actor.username, now, {
            "process_id": parsed.process_id, "version": number,
            "content_hash": parsed.content_hash, "status": version.status,
            "comment": comment}))
        return version

    def published_version(self, s: Session, process_id: str) -> ProcessVersion:
        """The version new cases of a process use."""
        version = s.scalar(select(ProcessVersion).where(
            ProcessVersion.process_id == process_id, ProcessVersion.status == "published")
            .order_by(ProcessVersion.number.desc()).limit(1))
        if version is None:
            raise ProcessNotFound(f"no published process with id {process_id!r}")
        return version

    def _version(self, s: Session, version_id: int) -> _Version:
        cached = self._versions.get(version_id)
        if cached is not None:
            return cached
        row = s.get(ProcessVersion, version_id)
        if row is None:
            raise ProcessNotFound(f"process version {version_id} does not exist")
        version = _Version(row.id, row.process_id, load_specs(row.spec), row.task_specs,
                           FormCatalogue.from_sources(row.sources))
        with self._lock:
            self._versions[version_id] = version
        return version

    # Cases --------------------------------------------------------------------------

    def start_case(self, process_id: str, data: Mapping[str, Any], actor: Actor, *,
                   version_id: int | None = None, title: str | None = None) -> CaseView:
        """Start a case of the published (or given) version and run it to its first wait."""
        now = self.clock()
        with self._unit() as s:
            row = self._startable_version(s, process_id, actor, version_id)
            view = self._start(s, row, plain_data(data), actor, now, title)
        return view

    def start_cases(self, process_id: str, starts: Sequence[tuple[Mapping[str, Any], str | None]],
                    actor: Actor, *,
                    then: Callable[[Session, list[CaseView]], None] | None = None
                    ) -> list[CaseView]:
        """Start many cases (data, title) in one transaction: all of them or none.

        `then` runs inside the same transaction once every case has started, so a
        caller can record what the batch belongs to; if it raises, nothing is kept.
        """
        now = self.clock()
        with self._unit() as s:
            row = self._startable_version(s, process_id, actor, None)
            views = [self._start(s, row, plain_data(data), actor, now, title)
                     for data, title in starts]
            if then is not None:
                then(s, views)
        return views

    def _startable_version(self, s: Session, process_id: str, actor: Actor,
                           version_id: int | None) -> ProcessVersion:
        row = (s.get(ProcessVersion, version_id) if version_id is not None
               else self.published_version(s, process_id))
        if row is None or row.process_id != process_id:
            raise ProcessNotFound(f"process {process_id!r} has no version {version_id}")
        if not (actor.is_system or actor.role in ("office", "admin")
                or (row.startable and actor.role in ("agent", "leader"))):
            raise Forbidden("you may not start cases of this process")
        return row

    def _start(self, s: Session, row: ProcessVersion, initial: dict[str, Any], actor: Actor,
               now: datetime, title: str | None) -> CaseView:
        """Create one case inside the caller's transaction and run it to its first wait."""
        version = self._version(s, row.id)
        start_form = start_form_files(row.process_id)[0]
        if version.forms.schema(start_form) is not None:
            version.forms.validate(start_form, initial)
        raw_project = initial.get("project")
        project: dict[str, Any] = raw_project if isinstance(raw_project, dict) else {}
        case = Case(process_version_id=row.id, process_id=row.process_id,
                    title=title or str(project.get("name") or row.name),
                    project_code=project.get("code"), status="running", state_version=0,
                    event_seq=0, last_hash=GENESIS, data=initial,
                    started_by=actor.username, started_at=now, updated_at=now)
        s.add(case)
        s.flush()
        ids = IdSource(case_namespace(case.id))
        with clock.pinned(now), task_ids(ids):
            workflow = new_workflow(version.specs, self.script_engine)
            with recorded.record() as calls:
                apply_event(workflow, "case_started", {"data": initial}, case.id)
            live = _Live(workflow, ids, 0, 0, 0)
            self._after_change(s, case, live, version, now, None)
        self._record(s, case, live, NewEvent("case_started", actor.username, now, {
            "process_id": row.process_id, "process_version_id": row.id,
            "version": row.number, "content_hash": row.content_hash, "data": initial,
            **({"calls": calls} if calls else {})}))
        self._snapshot(s, case, live, force=True)
        self._pending.append((case.id, live))
        return _case_view(case)

    def process_form(self, process_id: str, name: str) -> dict[str, Any] | None:
        """A form (JSON Schema) by file name: from the process's published version, else
        from the pack folder (the start form of `case_flow` is used by callers, not tasks)."""
        with self.db.reading() as s:
            row = self.published_version(s, process_id)
            schema = self._version(s, row.id).forms.schema(name)
        path = self.config.processes_dir / "forms" / name
        if schema is None and Path(name).name == name and path.is_file():
            loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return loaded
        return schema

    def complete_task(self, task_id: str, data: Mapping[str, Any], actor: Actor,
                      seen_version: int | None = None) -> CaseView:
        """Complete a ready task with the actor's data; the next wait state is reached."""
        submitted = plain_data(data)
        return self._task_command(task_id, actor, seen_version, "task_completed", submitted)

    def claim_task(self, task_id: str, actor: Actor, seen_version: int | None = None
                   ) -> TaskView:
        """Take a ready task of the actor's department so colleagues see it is being handled."""
        return self._assign(task_id, actor, seen_version, claim=True)

    def release_task(self, task_id: str, actor: Actor, seen_version: int | None = None
                     ) -> TaskView:
        """Give a claimed task back to the department's inbox."""
        return self._assign(task_id, actor, seen_version, claim=False)

    def save_draft(self, task_id: str, data: Mapping[str, Any], actor: Actor) -> TaskView:
        """Keep half-filled form data on a task without completing it."""
        now = self.clock()
        with self.db.transaction() as s:
            row = self._task_row(s, task_id, lock=True)
            self._check_task_actor(row, actor)
            if row.state != "ready":
                raise TaskNotReady(self._not_ready_message(row))
            row.draft = plain_data(data)
            row.version += 1
            case = self._lock_case(s, row.case_id)
            self._record(s, case, None, NewEvent("task_draft_saved", actor.username, now,
                                                 {"task_id": row.id}))
            view = _to_view(row, case.title)
        return view

    def record_case_event(self, case_id: int, event_type: str, data: Mapping[str, Any],
                          actor: Actor) -> None:
        """Append a non-workflow event (e.g. `document_generated`) to a case's chain."""
        with self.db.transaction() as s:
            self.append_case_event(s, case_id, NewEvent(event_type, actor.username,
                                                        self.clock(), plain_data(data)))

    def append_case_event(self, s: Session, case_id: int, new: NewEvent) -> None:
        """Append a non-workflow event inside the caller's transaction (replays skip it)."""
        if new.type in WORKFLOW_EVENTS:
            raise EngineError(f"{new.type} events are recorded by the engine's commands only")
        case = self._lock_case(s, case_id)
        self._record(s, case, None, new)

    @functools.cached_property
    def reference(self) -> ReferenceData:
        """The reference data of the configured folder (calendar, items, settings)."""
        return ReferenceData.load(self.config.data_dir)

    def terminate_case(self, case_id: int, reason: str, actor: Actor) -> CaseView:
        """Stop a running case with a reason; its open tasks and timers are withdrawn."""
        if not reason or not reason.strip():
            raise EngineError("a reason is required to terminate a case")
        if not (actor.is_system or actor.role in ("office", "admin")):
            raise Forbidden("only the office or an administrator may terminate a case")
        return self._case_command(case_id, actor, "case_terminated", {"reason": reason.strip()})

    def fire_due_timers(self, limit: int = 100, actor: Actor = SYSTEM) -> int:
        """Fire every timer due by now; return how many cases were advanced."""
        now = self.clock()
        fired = 0
        with self.db.reading() as s:
            due = s.execute(select(Timer.case_id, func.min(Timer.due_at))
                            .where(Timer.due_at <= now).group_by(Timer.case_id)
                            .order_by(func.min(Timer.due_at)).limit(limit)).all()
        for case_id, _ in due:
            try:
                if self._fire_case_timers(case_id, actor, now):
                    fired += 1
            except Conflict:
                continue  # another worker took it
        return fired

    def _fire_case_timers(self, case_id: int, actor: Actor, now: datetime) -> bool:
        with self._unit() as s:
            locked = select(Timer).where(Timer.case_id == case_id, Timer.due_at <= now)
            if self.db.postgres:
                # Another worker holding this case's timers skips them instead of waiting.
                locked = locked.with_for_update(skip_locked=True)
            timers = list(s.scalars(locked))
            if not timers:
                return False
            case = self._lock_case(s, case_id)
            if case.status != "running":
                return False
            names = sorted(t.spec_name for t in timers)
            self._change(s, case, actor, now, "timer_fired",
                         {"timers": names, "due": audit.format_time(min(t.due_at for t in timers))})
        return True

    # Migration of running cases ------------------------------------------------------

    def migration_check(self, case_id: int, to_version_id: int) -> migration.MigrationCheck:
        """Whether a running case could move to another version of its process, and why not."""
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            target = self._target_version(s, case, to_version_id)
            specs = self._version(s, target.id).specs
            if case.status != "running":
                return migration.MigrationCheck([f"the case is {case.status}"])
            return self._read(s, case, lambda wf: migration.check(wf, specs))

    def migrate_case(self, case_id: int, to_version_id: int, actor: Actor) -> CaseView:
        """Move a running case to another version of its process (one audited event)."""
        return self._migrate(case_id, to_version_id, actor, "case_migrated", {})

    def revert_migration(self, case_id: int, actor: Actor) -> CaseView:
        """Move a case back to the version it ran before its last migration."""
        with self.db.reading() as s:
            last = s.scalars(select(Event).where(Event.stream == f"case:{case_id}",
                                                 Event.type.in_(MIGRATION_EVENTS))
                             .order_by(Event.seq.desc()).limit(1)).first()
        if last is None or last.type != "case_migrated":
            raise Conflict(f"case {case_id} has no migration to revert")
        return self._migrate(case_id, int(last.data["from_version_id"]), actor,
                             "case_migration_reverted", {"reverts_seq": last.seq})

    def _target_version(self, s: Session, case: Case, version_id: int) -> ProcessVersion:
        target = s.get(ProcessVersion, version_id)
        if target is None or target.process_id != case.process_id:
            raise ProcessNotFound(f"process {case.process_id!r} has no version id {version_id}")
        return target

    def _migrate(self, case_id: int, to_version_id: int, actor: Actor, event_type: str,
                 extra: dict[str, Any]) -> CaseView:
        if not (actor.is_system or actor.role == "admin"):
            raise Forbidden("only an administrator may migrate cases")
        now = self.clock()
        with self._unit() as s:
            case = self._lock_case(s, case_id)
            if case.status != "running":
                raise CaseNotRunning(f"case {case.id} is {case.status}; only running cases move")
            target = self._target_version(s, case, to_version_id)
            if target.id == case.process_version_id:
                raise Conflict(f"case {case.id} already runs version {target.number}")
            source = s.get(ProcessVersion, case.process_version_id)
            assert source is not None  # noqa: S101 (foreign key)
            old, new = self._version(s, source.id), self._version(s, target.id)
            live = self._live(s, case, old)
            payload = {"process_id": case.process_id, "from_version_id": source.id,
                       "from_version": source.number, "to_version_id": target.id,
                       "to_version": target.number, "content_hash": target.content_hash,
                       **extra}
            try:
                with clock.pinned(now), task_ids(live.ids):
                    migration.migrate(live.workflow, new.specs)
                case.process_version_id = target.id
                self._after_change(s, case, live, new, now, None)
                self._record(s, case, live, NewEvent(event_type, actor.username, now, payload))
                self._snapshot(s, case, live, force=True)
                s.flush()
            except BaseException:
                self._forget(case.id)
                raise
            self._pending.append((case.id, live))
            view = _case_view(case)
        return view

    def _apply(self, workflow: BpmnWorkflow, event_type: str, payload: dict[str, Any],
               case_id: int) -> None:
        """Re-run one recorded event; migrations re-bind to the version they name."""
        if event_type in MIGRATION_EVENTS:
            migration.migrate(workflow, self._version_of(int(payload["to_version_id"])).specs)
        else:
            apply_event(workflow, event_type, payload, case_id)

    def _version_of(self, version_id: int) -> _Version:
        cached = self._versions.get(version_id)
        if cached is not None:
            return cached
        with self.db.reading() as s:
            return self._version(s, version_id)

    # Reading ------------------------------------------------------------------------

    def get_case(self, case_id: int) -> CaseView:
        """A case's status and data."""
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            return _case_view(case)

    def list_tasks(self, *, department: str | None = None, assignee: str | None = None,
                   case_id: int | None = None, states: Iterable[str] = ("ready",),
                   limit: int = 50, offset: int = 0, phase: str | None = None,
                   item_code: str | None = None, due_before: datetime | None = None,
                   open_to: str | None = None, order: str = "due",
                   green_only: bool = False) -> list[TaskView]:
        """Human tasks from the index, filtered and paged in SQL.

        `open_to` keeps the tasks nobody claimed plus those claimed by that user;
        `due_before` keeps tasks due before that moment (pass now for the overdue ones);
        `order` is "due" (soonest due first) or "age" (oldest first); `green_only` keeps
        the tasks of green-channel items.
        """
        if order not in TASK_ORDERS:
            raise EngineError(f"unknown task order {order!r}")
        query = _task_filters(
            select(HumanTask, Case.title).join(Case, Case.id == HumanTask.case_id),
            department=department, assignee=assignee, case_id=case_id, states=states,
            phase=phase, item_code=item_code, due_before=due_before, open_to=open_to,
            green_only=green_only)
        with self.db.reading() as s:
            if order == "age":
                rows = list(s.execute(query.order_by(HumanTask.created_at, HumanTask.id)
                                      .limit(limit).offset(offset)))
                return [_to_view(row, title) for row, title in rows]
            # Soonest due first, tasks without a due date last. Two index-ordered queries
            # instead of one `ORDER BY due_at IS NULL, ...`, which no index can serve (the
            # whole department's tasks would be sorted for every inbox page).
            rows = list(s.execute(query.where(HumanTask.due_at.is_not(None))
                                  .order_by(HumanTask.due_at, HumanTask.created_at, HumanTask.id)
                                  .limit(limit).offset(offset)))
            if len(rows) < limit:
                skip = 0
                if not rows and offset:  # the page starts inside the undated tasks
                    dated = s.scalar(select(func.count()).select_from(
                        query.where(HumanTask.due_at.is_not(None)).subquery())) or 0
                    skip = max(0, offset - dated)
                rows += list(s.execute(query.where(HumanTask.due_at.is_(None))
                                       .order_by(HumanTask.created_at, HumanTask.id)
                                       .limit(limit - len(rows)).offset(skip)))
            return [_to_view(row, title) for row, title in rows]

    def count_tasks(self, *, department: str | None = None, assignee: str | None = None,
                    case_id: int | None = None, states: Iterable[str] = ("ready",),
                    phase: str | None = None, item_code: str | None = None,
                    due_before: datetime | None = None, open_to: str | None = None,
                    green_only: bool = False) -> int:
        """How many tasks `list_tasks` would list with the same filters, without paging."""
        query = _task_filters(
            select(func.count()).select_from(HumanTask), department=department,
            assignee=assignee, case_id=case_id, states=states, phase=phase,
            item_code=item_code, due_before=due_before, open_to=open_to,
            green_only=green_only)
        with self.db.reading() as s:
            return int(s.scalar(query) or 0)

    def task_counts(self, username: str, *, department: str | None = None,
                    open_to: str | None = None) -> TaskCounts:
        """Open tasks of an inbox (a department's, or all when None): ready, claimed by
        the user, past due."""
        now = self.clock()
        visible = (or_(HumanTask.assignee.is_(None), HumanTask.assignee == open_to)
                   if open_to is not None else true())
        # One pass over the department's open tasks instead of one count per figure.
        query = _task_filters(
            select(func.count().filter(visible),
                   func.count().filter(HumanTask.assignee == username),
                   func.count().filter(and_(visible, HumanTask.due_at < now)))
            .select_from(HumanTask),
            department=department, assignee=None, case_id=None, states=("ready",),
            phase=None, item_code=None, due_before=None, open_to=None)
        with self.db.reading() as s:
            ready, mine, overdue = s.execute(query).one()
        return TaskCounts(ready=ready, claimed_by_me=mine, overdue=overdue)

    def task_phases_and_items(self, department: str | None) -> tuple[list[str],
                                                                     list[tuple[str, str]]]:
        """The phases and items (code, name) of a department's open tasks, for filters."""
        base = select(HumanTask.phase, HumanTask.item_code, HumanTask.item_name).where(
            HumanTask.state == "ready")
        if department is not None:
            base = base.where(HumanTask.department == department)
        with self.db.reading() as s:
            rows = s.execute(base.distinct().limit(500)).all()
        phases = sorted({p for p, _, _ in rows if p})
        items = sorted({(c, n or c) for _, c, n in rows if c}, key=lambda pair: pair[1])
        return phases, items

    def list_cases(self, *, search: str | None = None, statuses: Iterable[str] = ("running",),
                   department: str | None = None, limit: int = 50, offset: int = 0
                   ) -> list[CaseView]:
        """Cases by status, newest first; `search` matches the project name or code;
        `department` keeps the cases where that department holds or held a task."""
        query = _case_filters(select(Case), search, statuses, department
                              ).order_by(Case.id.desc())
        with self.db.reading() as s:
            return [_case_view(c) for c in s.scalars(query.limit(limit).offset(offset))]

    def count_cases(self, *, search: str | None = None,
                    statuses: Iterable[str] = ("running",), department: str | None = None
                    ) -> int:
        """How many cases `list_cases` would list, without paging."""
        query = _case_filters(select(func.count()).select_from(Case), search, statuses,
                              department)
        with self.db.reading() as s:
            return int(s.scalar(query) or 0)

    def start_form(self, process_id: str) -> StartForm | None:
        """The registration form of the published version of a process, if it has one."""
        with self.db.reading() as s:
            row = self.published_version(s, process_id)
            version = self._version(s, row.id)
        name, ui_name = start_form_files(process_id)
        schema = version.forms.schema(name)
        if schema is None:
            return None
        return StartForm(process_id, row.name, schema, version.forms.schema(ui_name))

    def startable_processes(self, actor: Actor) -> list[tuple[str, str]]:
        """(process id, name) of the published processes the actor may start."""
        with self.db.reading() as s:
            rows = s.execute(select(ProcessVersion.process_id, ProcessVersion.name,
                                    ProcessVersion.startable)
                             .where(ProcessVersion.status == "published")
                             .order_by(ProcessVersion.process_id)).all()
        return [(pid, name) for pid, name, startable in rows
                if actor.role in ("office", "admin")
                or (startable and actor.role in ("agent", "leader"))]

    def may_see_case(self, case_id: int, actor: Actor) -> bool:
        """Whether the actor may read a case: the office, administrators and auditors see
        every case; agents and leaders the cases where their department holds or held a task."""
        if actor.is_system or actor.role in ("office", "admin", "auditor"):
            return True
        if actor.role not in ("agent", "leader") or actor.department is None:
            return False
        with self.db.reading() as s:
            found = s.scalar(select(HumanTask.id).where(
                HumanTask.case_id == case_id, HumanTask.department == actor.department)
                .limit(1))
        return found is not None

    def check_case_visible(self, case_id: int, actor: Actor) -> CaseView:
        """The case, if the actor may read it: NotFound for a missing case, Forbidden for
        one the actor may not read."""
        case = self.get_case(case_id)
        if not self.may_see_case(case_id, actor):
            raise Forbidden("this case does not involve your department")
        return case

    # Attachments --------------------------------------------------------------------

    @property
    def files(self) -> FileStore:
        """Where attachment contents are kept."""
        return FileStore(self.config.instance_dir / "attachments")

    def add_attachment(self, task_id: str, filename: str, content: bytes, actor: Actor,
                       material: str | None = None) -> AttachmentView:
        """Attach a file to a ready task the actor may work on (recorded in the case's
        audit chain with its SHA-256)."""
        name, content_type = check_upload(filename, content)
        now = self.clock()
        with self.db.reading() as s:
            case_id = self._task_row(s, task_id).case_id
        with self.db.transaction() as s:
            case = self._lock_case(s, case_id)
            row = self._task_row(s, task_id, lock=True)
            self._check_task_actor(row, actor)
            if row.state != "ready":
                raise TaskNotReady(self._not_ready_message(row))
            digest = self.files.put(content)
            attachment = Attachment(case_id=case.id, task_id=row.id, material=material or None,
                                    filename=name, content_type=content_type,
                                    size=len(content), sha256=digest,
                                    uploaded_by=actor.username, uploaded_at=now)
            s.add(attachment)
            s.flush()
            self._record(s, case, None, NewEvent("attachment_added", actor.username, now, {
                "attachment_id": attachment.id, "task_id": row.id, "material": material,
                "filename": name, "size": len(content), "sha256": digest}))
            return _attachment_view(attachment)

    def list_attachments(self, *, case_id: int, task_id: str | None = None
                         ) -> list[AttachmentView]:
        """A case's attachments (or one task's), oldest first."""
        query = select(Attachment).where(Attachment.case_id == case_id)
        if task_id is not None:
            query = query.where(Attachment.task_id == task_id)
        with self.db.reading() as s:
            return [_attachment_view(a) for a in s.scalars(query.order_by(Attachment.id))]

    def get_attachment(self, attachment_id: int, actor: Actor) -> tuple[AttachmentView, Path]:
        """An attachment and the file holding it, for an actor who may read its case."""
        with self.db.reading() as s:
            row = s.get(Attachment, attachment_id)
            if row is None:
                raise NotFound(f"attachment {attachment_id} does not exist")
            view = _attachment_view(row)
        if not self.may_see_case(view.case_id, actor):
            raise Forbidden("this case does not involve your department")
        return view, self.files.path(view.sha256)

    def get_task(self, task_id: str, actor: Actor) -> TaskDetail:
        """A task with its form and the case data it shows (actor must be allowed to see it)."""
        with self.db.reading() as s:
            row = self._task_row(s, task_id)
            if not (actor.may_work_on(row.department)
                    or actor.role in ("office", "admin", "auditor")):
                raise Forbidden("this task belongs to another department")
            case = s.get(Case, row.case_id)
            if case is None:
                raise CaseNotFound(f"case {row.case_id} does not exist")
            version = self._version(s, case.process_version_id)
            meta = version.task_specs.get(f"{row.process_id}:{row.spec_name}", {})
            data: dict[str, Any] = {}
            if row.state == "ready":
                data = self._read(s, case, lambda wf: _task_data(wf, row.id))
            return TaskDetail(
                task=_to_view(row, case.title),
                form_schema=version.forms.schema(meta.get("form")),
                ui_schema=version.forms.schema(meta.get("uischema")),
                instructions=meta.get("instructions", ""), data=data, draft=row.draft)

    def element_states(self, case_id: int, upto_seq: int | None = None
                       ) -> dict[str, dict[str, list[str]]]:
        """BPMN element ids by state (completed, active, waiting), per process of the case.

        With `upto_seq`, the states are those after that event, rebuilt by re-execution.
        """
        if upto_seq is not None:
            return _element_states(self.replay(case_id, upto_seq))
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            return self._read(s, case, _element_states)

    def case_diagrams(self, case_id: int) -> dict[str, str]:
        """The BPMN XML of each process a case runs (its own and the ones it calls)."""
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            version = s.get(ProcessVersion, case.process_version_id)
            sources = version.sources if version is not None else {}
            called = self._version(s, case.process_version_id).specs.subprocess_specs
        wanted = {case.process_id} | set(called)
        diagrams: dict[str, str] = {}
        for name, text in sources.items():
            if name.endswith(".bpmn"):
                for process_id in _process_ids(text):
                    if process_id in wanted:
                        diagrams[process_id] = text
        return diagrams

    def case_departments(self, case_id: int) -> set[str]:
        """Departments that hold or held a task in the case."""
        with self.db.reading() as s:
            return {d for d in s.scalars(select(HumanTask.department).where(
                HumanTask.case_id == case_id).distinct()) if d}

    def case_ids(self) -> list[int]:
        """Every case id, oldest first."""
        with self.db.reading() as s:
            return list(s.scalars(select(Case.id).order_by(Case.id)))

    @staticmethod
    def _case_and_events(s: Session, case_id: int) -> tuple[Case, list[Event]]:
        case = s.get(Case, case_id)
        if case is None:
            raise CaseNotFound(f"case {case_id} does not exist")
        events = list(s.scalars(select(Event).where(Event.stream == f"case:{case_id}")
                                .order_by(Event.seq)))
        return case, events

    def case_events(self, case_id: int) -> list[Event]:
        """A case's audit events in order."""
        with self.db.reading() as s:
            return list(s.scalars(select(Event).where(Event.stream == f"case:{case_id}")
                                  .order_by(Event.seq)))

    def verify_case(self, case_id: int) -> Verification:
        """Check the hash chain, then re-execute the events and compare with stored state."""
        with self.db.reading() as s:
            case, events = self._case_and_events(s, case_id)
            broken = audit.verify_events(events)
            if broken is None and events and events[-1].hash != case.last_hash:
                broken = ChainBreak(events[-1].seq, "the last event is not the one the case "
                                    "records (events were removed from the end)")
            if broken is not None:
                return Verification(case_id, False, len(events), broken.seq, broken.reason)
            mismatch = self._replay_matches(s, case, events)
            if mismatch is not None:
                return Verification(case_id, False, len(events), mismatch.seq, mismatch.reason)
        return Verification(case_id, True, len(events))

    def replay(self, case_id: int, upto_seq: int | None = None) -> BpmnWorkflow:
        """Rebuild a case's workflow by re-executing its events up to a sequence number."""
        with self.db.reading() as s:
            case, events = self._case_and_events(s, case_id)
            version = self._version(s, case.process_version_id)
        workflow, _ = self._reexecute(case.id, version, events, upto_seq)
        return workflow

    # Internals: commands ------------------------------------------------------------

    def _task_command(self, task_id: str, actor: Actor, seen_version: int | None,
                      event_type: str, submitted: dict[str, Any]) -> CaseView:
        now = self.clock()
        with self.db.reading() as s:
            case_id = self._task_row(s, task_id).case_id
        with self._unit() as s:
            case = self._lock_case(s, case_id)  # always the case first, then its tasks
            row = self._task_row(s, task_id, lock=True)
            self._check_task_actor(row, actor)
            if row.state != "ready":
                raise TaskNotReady(self._not_ready_message(row))
            if seen_version is not None and row.version != seen_version:
                raise Conflict("this task changed since you opened it (claimed, released or "
                               "saved by someone else); reload it and try again",
                               task_id=task_id, version=row.version)
            if row.assignee and row.assignee != actor.username and not actor.is_system:
                raise Conflict(f"this task is claimed by {row.assignee}", task_id=task_id)
            if case.status != "running":
                raise CaseNotRunning(f"case {case.id} is {case.status}")
            version = self._version(s, case.process_version_id)
            meta = version.task_specs.get(f"{row.process_id}:{row.spec_name}", {})
            version.forms.validate(meta.get("form"), submitted)
            row.state, row.completed_at, row.completed_by = "completed", now, actor.username
            row.version += 1
            row.draft = None
            row.result = submitted
            view = self._change(s, case, actor, now, event_type,
                                {"task_id": task_id, "task_spec": row.spec_name,
                                 "data": submitted}, done_task=row.id)
        return view

    def _case_command(self, case_id: int, actor: Actor, event_type: str,
                      payload: dict[str, Any]) -> CaseView:
        now = self.clock()
        with self._unit() as s:
            case = self._lock_case(s, case_id)
            if case.status != "running":
                raise CaseNotRunning(f"case {case.id} is already {case.status}")
            view = self._change(s, case, actor, now, event_type, payload)
        return view

    def _change(self, s: Session, case: Case, actor: Actor, now: datetime, event_type: str,
                payload: dict[str, Any], done_task: str | None = None) -> CaseView:
        """Apply one workflow-changing event to a locked case, then record it."""
        version = self._version(s, case.process_version_id)
        live = self._live(s, case, version)
        try:
            with clock.pinned(now), task_ids(live.ids):
                with recorded.record() as calls:
                    apply_event(live.workflow, event_type, payload, case.id)
                self._after_change(s, case, live, version, now, done_task)
            if calls:  # the reference data's answers, so a re-execution gets the same
                payload = {**payload, "calls": calls}
            if event_type == "case_terminated":
                case.status, case.ended_at = "terminated", now
                case.end_reason = payload["reason"]
            self._record(s, case, live, NewEvent(event_type, actor.username, now, payload))
            self._snapshot(s, case, live)
            s.flush()
        except BaseException:
            self._forget(case.id)
            raise
        self._pending.append((case.id, live))
        return _case_view(case)

    @property
    def _pending(self) -> list[tuple[int, _Live]]:
        pending: list[tuple[int, _Live]] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    @contextlib.contextmanager
    def _unit(self) -> Iterator[Session]:
        """One command's transaction; live workflows it changed are cached once it commits."""
        self._pending.clear()
        try:
            with self.db.transaction() as s:
                yield s
        finally:
            pending, self._local.pending = list(self._pending), []
        for case_id, live in pending:
            self._remember(case_id, live)

    def _after_change(self, s: Session, case: Case, live: _Live, version: _Version,
                      now: datetime, done_task: str | None) -> None:
        """Bring the task index, timers, status and data in line with the workflow."""
        workflow = live.workflow
        scan = _scan(workflow)
        ready = {str(t.id): t for t in scan.ready_manual}
        open_rows = {row.id: row for row in s.scalars(select(HumanTask).where(
            HumanTask.case_id == case.id, HumanTask.state == "ready"))}
        for task_id, row in open_rows.items():
            if task_id not in ready and task_id != done_task:
                row.state, row.completed_at = "cancelled", now
                row.version += 1
        for task_id, task in ready.items():
            if task_id not in open_rows:
                row = self._index_row(case, version, task, now)
                s.add(row)
                self._announce(s, case, version, task, row, now)
        self._sync_timers(s, case, workflow)
        case.data = case_data_after(case.data, workflow, scan, done_task)
        if scan.completed and case.status == "running":
            case.status, case.ended_at = "completed", now
            stop = next((t for t in scan.top_ends if isinstance(
                getattr(t.task_spec, "event_definition", None), TerminateEventDefinition)), None)
            if stop is not None:  # the diagram ended the case through a terminate end event
                case.status = "terminated"
                reason = case.data.get("termination_reason")
                case.end_reason = str(reason or stop.task_spec.bpmn_name or stop.task_spec.name)
        case.updated_at = now
        case.state_version += 1
        live.state_version = case.state_version

    def _index_row(self, case: Case, version: _Version, task: Task, now: datetime
                   ) -> HumanTask:
        process_id = task.workflow.spec.name
        spec_name = task.task_spec.bpmn_id or task.task_spec.name  # MI children share the id
        meta = version.task_specs.get(f"{process_id}:{spec_name}", {})
        department = meta.get("department")
        names = {**self.functions, **task.data}
        if meta.get("department_expression"):
            department = self._evaluate(task, meta["department_expression"], names, "owner")
        due = None
        if meta.get("due_expression"):
            due = parse_due(self._evaluate(task, meta["due_expression"], names, "due date"))
        if not department:
            raise WorkflowError(f"task {task.task_spec.bpmn_name or task.task_spec.name} has "
                                "no owning department; fix the diagram's lane or rule")
        item = _item_of(task)
        phase = meta.get("phase") or item.get("phase")
        return HumanTask(
            id=str(task.id), case_id=case.id, process_id=process_id,
            spec_name=spec_name,
            title=meta.get("title") or task.task_spec.bpmn_name or spec_name,
            department=str(department), state="ready", version=1,
            form=meta.get("form"), item_code=item.get("code"), item_name=item.get("name"),
            phase=str(phase) if phase is not None else None, stage=meta.get("stage"),
            due_at=due, created_at=now, subject=_subject_of(task),
            green_channel=bool(item.get("green_channel") or task.data.get("green_channel")))

    def _announce(self, s: Session, case: Case, version: _Version, task: Task, row: HumanTask,
                  now: datetime) -> None:
        """Tell the people a new task's `notify` property names, in the indexing transaction."""
        meta = version.task_specs.get(f"{row.process_id}:{row.spec_name}", {})
        targets = meta.get("notify") or []
        if not targets:
            return
        from . import notify

        item_department = _item_of(task).get("department")
        notify.task_raised(s, case_id=case.id, case_title=case.title, task=row,
                           item_department=str(item_department) if item_department else None,
                           targets=list(targets), now=now, mail=self.config.mail_enabled)

    def _evaluate(self, task: Task, expression: str, names: dict[str, Any], what: str) -> Any:
        try:
            return expressions.evaluate(expression, task.data, self.functions)
        except (ValueError, LookupError, TypeError, ArithmeticError) as exc:
            raise WorkflowError(f"the {what} rule {expression!r} of task "
                                f"{task.task_spec.bpmn_name or task.task_spec.name} failed: "
                                f"{exc}") from exc

    def _sync_timers(self, s: Session, case: Case, workflow: BpmnWorkflow) -> None:
        wanted: dict[str, tuple[str, datetime]] = {}
        for task in workflow.event_manager.tasks.values():
            due = _timer_due(task)
            if due is not None:
                wanted[str(task.id)] = (task.task_spec.name, due)
        existing = {t.task_id: t for t in s.scalars(select(Timer).where(Timer.case_id == case.id))}
        for task_id, timer in existing.items():
            if task_id not in wanted:
                s.delete(timer)
            elif timer.due_at != wanted[task_id][1]:
                timer.due_at = wanted[task_id][1]
        for task_id, (name, due) in wanted.items():
            if task_id not in existing:
                s.add(Timer(case_id=case.id, task_id=task_id, spec_name=name, due_at=due))

    def _record(self, s: Session, case: Case, live: _Live | None, new: NewEvent) -> None:
        seq = case.event_seq + 1
        event = audit.append(s, f"case:{case.id}", case.id, seq, case.last_hash, new)
        case.event_seq, case.last_hash = seq, event.hash
        if live is not None:
            live.event_seq = seq

    def _snapshot(self, s: Session, case: Case, live: _Live, force: bool = False) -> None:
        due = case.event_seq - live.snapshot_seq >= self.config.snapshot_every
        if not (force or due or case.status != "running"):
            return
        state = dump_state(live.workflow)
        snapshot = s.get(CaseSnapshot, case.id)
        if snapshot is None:
            s.add(CaseSnapshot(case_id=case.id, event_seq=case.event_seq,
                               id_counter=live.ids.counter, state=state))
        else:
            snapshot.event_seq, snapshot.id_counter = case.event_seq, live.ids.counter
            snapshot.state = state
        live.snapshot_seq = case.event_seq

    # Internals: state in memory -----------------------------------------------------

    def _live(self, s: Session, case: Case, version: _Version) -> _Live:
        """The case's workflow at its current state: from the cache, or rebuilt."""
        with self._lock:
            cached = self._cache.pop(case.id, None)
        if cached is not None and cached.state_version == case.state_version:
            return cached
        snapshot = s.get(CaseSnapshot, case.id)
        if snapshot is None:
            events = list(s.scalars(select(Event).where(Event.stream == f"case:{case.id}")
                                    .order_by(Event.seq)))
            workflow, ids = self._reexecute(case.id, version, events, None)
            return _Live(workflow, ids, case.state_version, case.event_seq, 0)
        workflow = load_state(snapshot.state, version.specs, self.script_engine)
        ids = IdSource(case_namespace(case.id), snapshot.id_counter)
        later = s.scalars(select(Event).where(Event.stream == f"case:{case.id}",
                                              Event.seq > snapshot.event_seq,
                                              Event.type.in_(WORKFLOW_EVENTS))
                          .order_by(Event.seq))
        for event in later:
            with clock.pinned(event.at), task_ids(ids):
                self._apply(workflow, event.type, event.data, case.id)
        return _Live(workflow, ids, case.state_version, case.event_seq, snapshot.event_seq)

    def _read(self, s: Session, case: Case, reader: Callable[[BpmnWorkflow], _T]) -> _T:
        """Read from the case's current workflow, then return it to the cache.

        The live workflow is taken out of the cache while it is read, so a command
        in another thread never changes it under the reader.
        """
        version = self._version(s, case.process_version_id)
        live = self._live(s, case, version)
        result = reader(live.workflow)
        self._remember(case.id, live)
        return result

    def _reexecute(self, case_id: int, version: _Version, events: list[Event],
                   upto_seq: int | None,
                   after: Callable[[Event, BpmnWorkflow], None] | None = None
                   ) -> tuple[BpmnWorkflow, IdSource]:
        """Rebuild a case from its first event; `after` sees the workflow after each event."""
        ids = IdSource(case_namespace(case_id))
        if events and events[0].type == "case_started" and \
                events[0].data.get("process_version_id") not in (None, version.id):
            # A migrated case re-executes from the version it started on.
            version = self._version_of(int(events[0].data["process_version_id"]))
        with clock.pinned(events[0].at if events else self.clock()), task_ids(ids):
            workflow = new_workflow(version.specs, self.script_engine)
        for event in events:
            if upto_seq is not None and event.seq > upto_seq:
                break
            if event.type in WORKFLOW_EVENTS:
                try:
                    with clock.pinned(event.at), task_ids(ids):
                        self._apply(workflow, event.type, event.data, case_id)
                except EngineError as exc:
                    raise _ReplayFailed(exc.message, event.seq, event.id) from exc
            if after is not None:
                after(event, workflow)
        return workflow, ids

    def _replay_matches(self, s: Session, case: Case, events: list[Event]) -> ChainBreak | None:
        """Re-execute the events; report where the stored state disagrees."""
        version = self._version(s, case.process_version_id)
        data = DataReplay()
        try:
            workflow, _ = self._reexecute(case.id, version, events, None, data)
        except _ReplayFailed as exc:
            return ChainBreak(exc.seq, f"the event cannot be re-executed: {exc.message}",
                              exc.event_id)
        rows = {row.id: row for row in s.scalars(select(HumanTask).where(
            HumanTask.case_id == case.id))}
        broken = _completions_match(events, rows)
        if broken is not None:
            return broken
        scan = _scan(workflow)
        expected = {str(t.id) for t in scan.ready_manual}
        stored = {row.id for row in rows.values() if row.state == "ready"}
        last = events[-1].seq if events else 0
        if expected != stored:
            return ChainBreak(last, "the stored open tasks differ from the re-executed case: "
                              f"missing {sorted(expected - stored)}, unexpected "
                              f"{sorted(stored - expected)}")
        status = "completed" if scan.completed else "running"
        if case.status != "terminated" and case.status != status:
            return ChainBreak(last, f"the stored status {case.status!r} differs from the "
                              f"re-executed status {status!r}")
        if case.data != data.data:
            stored_data = case.data if isinstance(case.data, dict) else {}
            keys = sorted(k for k in set(stored_data) | set(data.data)
                          if stored_data.get(k) != data.data.get(k))
            return ChainBreak(data.seq, "the stored case data differs from the re-executed "
                              f"case in {', '.join(keys) or 'its whole value'}")
        return None

    def _remember(self, case_id: int, live: _Live) -> None:
        with self._lock:
            self._cache[case_id] = live
            self._cache.move_to_end(case_id)
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)

    def _forget(self, case_id: int) -> None:
        with self._lock:
            self._cache.pop(case_id, None)

    # Internals: rows and permissions ------------------------------------------------

    def _lock_case(self, s: Session, case_id: int) -> Case:
        case = s.get(Case, case_id, with_for_update=self.db.postgres, populate_existing=True)
        if case is None:
            raise CaseNotFound(f"case {case_id} does not exist")
        return case

    def _task_row(self, s: Session, task_id: str, lock: bool = False) -> HumanTask:
        row = s.get(HumanTask, task_id, with_for_update=lock and self.db.postgres,
                    populate_existing=lock)
        if row is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        return row

    @staticmethod
    def _check_task_actor(row: HumanTask, actor: Actor) -> None:
        if not actor.may_work_on(row.department):
            raise Forbidden("this task belongs to another department; only its agents may "
                            "claim or complete it")

    @staticmethod
    def _not_ready_message(row: HumanTask) -> str:
        if row.state == "completed":
            return (f"this task was already completed by {row.completed_by} at "
                    f"{row.completed_at:%Y-%m-%d %H:%M} UTC; nothing was changed")
        return f"this task is no longer open ({row.state}); nothing was changed"

    def _assign(self, task_id: str, actor: Actor, seen_version: int | None, claim: bool
                ) -> TaskView:
        now = self.clock()
        with self.db.reading() as s:
            case_id = self._task_row(s, task_id).case_id
        with self.db.transaction() as s:
            case = self._lock_case(s, case_id)
            row = self._task_row(s, task_id, lock=True)
            self._check_task_actor(row, actor)
            if row.state != "ready":
                raise TaskNotReady(self._not_ready_message(row))
            if seen_version is not None and row.version != seen_version:
                raise Conflict("this task changed since you opened it; reload it",
                               task_id=task_id, version=row.version)
            if claim:
                if row.assignee and row.assignee != actor.username:
                    raise Conflict(f"this task is already claimed by {row.assignee}")
                row.assignee, row.claimed_at = actor.username, now
            else:
                is_leader = actor.role == "leader" and actor.department == row.department
                if row.assignee is None:
                    raise Conflict("this task is not claimed")
                if row.assignee != actor.username and not (is_leader or actor.is_system):
                    raise Forbidden(f"only {row.assignee} or the department's leader may "
                                    "release this task")
                row.assignee, row.claimed_at = None, None
            row.version += 1
            self._record(s, case, None, NewEvent(
                "task_claimed" if claim else "task_released", actor.username, now,
                {"task_id": row.id, "task_spec": row.spec_name}))
            return _to_view(row, case.title)


def apply_event(workflow: BpmnWorkflow, event_type: str, payload: dict[str, Any],
                case_id: int) -> None:
    """Re-run one recorded event against a workflow (commands and replays share this).

    An event that carries the answers its command got from the reference functions
    (`calls`) is re-run with those answers (see engine/recorded.py).
    """
    try:
        with recorded.served(payload.get("calls")):
            _run_event(workflow, event_type, payload, case_id)
    except SpiffWorkflowException as exc:
        raise WorkflowError(f"the process failed: {exc}") from exc
    except (KeyError, ValueError) as exc:  # a recorded event whose data is not what it names
        raise WorkflowError(f"the event's data cannot be applied: {exc!r}") from exc
    except expressions.UnsafeExpression as exc:
        raise WorkflowError(f"an expression was refused: {exc.message}") from exc


def _run_event(workflow: BpmnWorkflow, event_type: str, payload: dict[str, Any],
               case_id: int) -> None:
    if event_type == "case_started":
        workflow.task_tree.data.update(copy.deepcopy(payload["data"]))
        workflow.do_engine_steps()
    elif event_type == "task_completed":
        task = workflow.get_task_from_id(UUID(payload["task_id"]))
        if task is None or task.state != TaskState.READY:
            raise Conflict(f"task {payload['task_id']} is not ready in case {case_id}")
        task.data.update(copy.deepcopy(payload["data"]))
        task.run()
        workflow.do_engine_steps()
    elif event_type == "timer_fired":
        workflow.refresh_timers()
        workflow.do_engine_steps()
    elif event_type == "case_terminated":
        workflow.cancel()
    if workflow.completed:
        _drop_orphans(workflow)


def _drop_orphans(workflow: BpmnWorkflow) -> None:
    """Forget sub-processes whose calling task was dropped when the case was cancelled.

    Cancelling drops the children of unfinished tasks, but SpiffWorkflow keeps the
    sub-processes they had started; a restored case would not have them, so the
    running state would differ from its snapshot.
    """
    while True:
        alive = set(workflow.tasks)
        for sub in workflow.subprocesses.values():
            alive.update(sub.tasks)
        orphans = [key for key in workflow.subprocesses if key not in alive]
        if not orphans:
            return
        for key in orphans:
            del workflow.subprocesses[key]


def _element_states(workflow: BpmnWorkflow) -> dict[str, dict[str, list[str]]]:
    """BPMN element ids of a workflow by state, per process."""
    states: dict[str, dict[str, set[str]]] = {}
    for task in workflow.get_tasks():
        bpmn_id = getattr(task.task_spec, "bpmn_id", None)
        if bpmn_id is None:
            continue
        if task.state == TaskState.COMPLETED:
            key = "completed"
        elif task.state in (TaskState.READY, TaskState.STARTED):
            key = "active"
        elif task.state == TaskState.WAITING:
            key = "waiting"
        else:
            continue
        process = states.setdefault(task.workflow.spec.name,
                                    {"completed": set(), "active": set(), "waiting": set()})
        process[key].add(bpmn_id)
    return {pid: {k: sorted(v) for k, v in by_state.items()} for pid, by_state in
            states.items()}


class DataReplay:
    """Follows the case-level data through a re-execution, as the commands stored it."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.seq = 0

    def __call__(self, event: Event, workflow: BpmnWorkflow) -> None:
        if event.type not in WORKFLOW_EVENTS:
            return
        previous = event.data["data"] if event.type == "case_started" else self.data
        done = event.data.get("task_id") if event.type == "task_completed" else None
        self.data = case_data_after(previous, workflow, _scan(workflow), done)
        self.seq = event.seq


def _completions_match(events: list[Event], rows: Mapping[str, HumanTask]) -> ChainBreak | None:
    """Every completion event has its task stored as completed by that actor at that time."""
    completed: set[str] = set()
    for event in events:
        if event.type != "task_completed":
            continue
        task_id = str(event.data.get("task_id"))
        row = rows.get(task_id)
        if row is None:
            return ChainBreak(event.seq, f"the task {task_id} this event completed is missing "
                              "from the stored tasks", event.id)
        if (row.state, row.completed_by, row.completed_at) != ("completed", event.actor,
                                                                event.at):
            when = f"{row.completed_at:%Y-%m-%d %H:%M}" if row.completed_at else "-"
            return ChainBreak(event.seq, f"the stored task {row.title!r} ({row.state}, by "
                              f"{row.completed_by or '-'} at {when}) does not match this "
                              f"event (completed by {event.actor} at "
                              f"{event.at:%Y-%m-%d %H:%M})", event.id)
        completed.add(task_id)
    for row in rows.values():
        if row.state == "completed" and row.id not in completed:
            last = events[-1].seq if events else 0
            return ChainBreak(last, f"the stored task {row.title!r} is marked completed by "
                              f"{row.completed_by} but no event completed it")
    return None


def _process_ids(xml_text: str) -> list[str]:
    import re

    return re.findall(r'<(?:\w+:)?process\b[^>]*\bid="([^"]+)"', xml_text)


def _task_data(workflow: BpmnWorkflow, task_id: str) -> dict[str, Any]:
    task = workflow.get_task_from_id(UUID(task_id))
    return plain_data(task.data) if task is not None else {}


class _ReplayFailed(EngineError):
    """A recorded event could not be re-executed."""

    def __init__(self, message: str, seq: int, event_id: int | None) -> None:
        super().__init__(message)
        self.seq, self.event_id = seq, event_id


@dataclass(frozen=True)
class _Scan:
    """What one pass over a workflow's tasks found."""

    ready_manual: list[Task]
    top_active: list[Task]
    top_ends: list[Task]
    completed: bool


_ACTIVE = TaskState.READY | TaskState.STARTED | TaskState.WAITING


def _scan(workflow: BpmnWorkflow) -> _Scan:
    """One pass over every task of the case (SpiffWorkflow's tree iterator walks the
    whole tree once per query; the engine needs several answers after each command)."""
    ready: list[Task] = []
    active: list[Task] = []
    ends: list[Task] = []
    unfinished = False
    for task in workflow.tasks.values():
        state = task.state
        if state & _ACTIVE:
            active.append(task)
            if state == TaskState.READY and task.task_spec.manual:
                ready.append(task)
        if state & TaskState.NOT_FINISHED_MASK:
            unfinished = True
        elif state == TaskState.COMPLETED and isinstance(task.task_spec, EndEvent):
            ends.append(task)
    for sub in workflow.subprocesses.values():
        for task in sub.tasks.values():
            if task.state == TaskState.READY and task.task_spec.manual:
                ready.append(task)
    return _Scan(ready, active, ends, not unfinished)


def case_data_after(previous: Mapping[str, Any], workflow: BpmnWorkflow, scan: _Scan,
                    done_task: str | None) -> dict[str, Any]:
    """The case-level data: what the main process knows after a command.

    Item-level data stays in the called processes (and in the task index); the case
    keeps the newest data of its top-level tasks that are under way.
    """
    data = dict(previous)
    if done_task is not None:
        done = workflow.tasks.get(UUID(done_task))
        if done is not None:
            data.update(plain_data(done.data))
    for task in scan.top_active:
        data.update(plain_data(task.data))
    if scan.completed:
        for task in scan.top_ends:
            data.update(plain_data(task.data))
        data.update(plain_data(workflow.data))
    return data


def _item_of(task: Task) -> dict[str, Any]:
    """The approval item a task is about: `item` in its data, or its multi-instance element."""
    item = task.data.get("item")
    if not isinstance(item, dict) and task.parent is not None:
        input_item = getattr(task.parent.task_spec, "input_item", None)
        if input_item is not None:
            item = task.data.get(input_item.bpmn_id)
    return item if isinstance(item, dict) else {}


def _subject_of(task: Task) -> Any:
    """The element a multi-instance task works on (a follow-up action, an opinion, a policy)."""
    input_item = getattr(task.parent.task_spec, "input_item", None) if task.parent else None
    if input_item is None:
        return None
    value = task.data.get(input_item.bpmn_id)
    return plain_data({"v": value})["v"] if value is not None else None


def _timer_due(task: Task) -> datetime | None:
    value = task._get_internal_data("event_value")
    if isinstance(value, dict):  # cycle timers keep their next firing
        value = value.get("next") if value.get("cycles", 0) != 0 else None
    if not value:
        return None
    try:
        moment: datetime = TimerEventDefinition.get_datetime(str(value))
    except ValueError:
        return None
    return moment
