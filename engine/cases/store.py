"""How a case is stored: one unit of work per command over state, task index, timers and events."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, overload

from SpiffWorkflow.bpmn.specs.event_definitions.simple import TerminateEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from sqlalchemy import Select, and_, bindparam, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from engine.actors import Actor, OnBehalf, Proxy
from engine.audit import chain as audit
from engine.audit.chain import NewEvent
from engine.cases.elements import sync_elements
from engine.cases.instrument import command
from engine.cases.views import (
    _T,
    MIGRATION_EVENTS,
    WORKFLOW_EVENTS,
    CaseView,
    LiveCase,
    VersionSpecs,
    case_view,
    open_task_views,
    parse_due,
    plain_data,
    task_view,
)
from engine.cases.waits import sync_interactions
from engine.cases.workflow import (
    ReplayFailed,
    apply_event,
    case_data_after,
    item_of,
    reached_elements,
    scan_tasks,
    subject_of,
    wanted_timers,
)
from engine.config import Config
from engine.errors import (
    CaseNotFound,
    CaseNotRunning,
    Conflict,
    EngineError,
    Forbidden,
    ProcessNotFound,
    TaskNotFound,
    TaskNotReady,
    WorkflowError,
)
from engine.hooks import CaseChanged, DataSubmitted, Hooks, TaskRaised
from engine.pack import migration
from engine.pack.forms import FormCatalogue
from engine.runtime import branch_data, case_data, clock, expressions, recorded
from engine.runtime.spiff import (
    IdSource,
    case_namespace,
    dump_state,
    load_specs,
    load_state,
    new_workflow,
    task_ids,
)
from engine.store.db import Database
from engine.store.files import FileStore, check_upload
from engine.store.models import (
    Attachment,
    Case,
    CaseElement,
    CaseSnapshot,
    Department,
    Event,
    HumanTask,
    ProcessVersion,
    Timer,
)


def _task_and_open_siblings() -> tuple[Any, Any]:
    """The case id of the task given as `task_id`, and the condition that keeps that task
    and its case's other open tasks."""
    task_id = bindparam("task_id", type_=HumanTask.id.type)
    owner = select(HumanTask.case_id).where(HumanTask.id == task_id).scalar_subquery()
    return owner, and_(HumanTask.case_id == owner,
                       or_(HumanTask.state == "ready", HumanTask.id == task_id))


def _locking_statements() -> tuple[Select[Case], Select[HumanTask], Select[HumanTask, Case]]:
    """What `_lock_task_case` sends, built once: SQLAlchemy keys its compiled-statement
    cache on the statement, and a statement built anew for each command costs more to key
    than to run on SQLite. PostgreSQL: the task's case, locked, then the task with the
    case's open tasks, locked. SQLite: the same rows, each with the case, in one
    statement."""
    owner, wanted = _task_and_open_siblings()
    fresh = {"populate_existing": True}
    return (select(Case).where(Case.id == owner).with_for_update().execution_options(**fresh),
            select(HumanTask).where(wanted).with_for_update().execution_options(**fresh),
            select(HumanTask, Case).join(Case, Case.id == HumanTask.case_id).where(wanted)
            .execution_options(**fresh))


_CASE_LOCKED, _TASKS_LOCKED, _TASKS_WITH_CASE = _locking_statements()
# What a cached or restored workflow re-runs: the case's workflow events after one it has seen,
# as plain rows (built once; the statement cost more to build than to run).
_WORKFLOW_EVENTS_BETWEEN = select(Event.type, Event.at, Event.data).where(
    Event.stream == bindparam("stream"), Event.seq > bindparam("after"),
    Event.seq <= bindparam("upto"), Event.type.in_(WORKFLOW_EVENTS)).order_by(Event.seq)
# A task with its case (one statement; the case is needed for every answer): for reading,
# and for a change on SQLite, whose writer holds the database from BEGIN IMMEDIATE on.
_TASK_AND_CASE = select(HumanTask, Case).join(Case, Case.id == HumanTask.case_id).where(
    HumanTask.id == bindparam("task_id", type_=HumanTask.id.type)).execution_options(
    populate_existing=True)


class CaseStore:
    """Live cases, their versions and the unit of work every command runs in."""

    def __init__(self, config: Config, *, database: Database | None = None,
                 clock_source: Callable[[], datetime] = clock.now,
                 functions: Mapping[str, Callable[..., Any]] | None = None,
                 hooks: Hooks | None = None) -> None:
        self.config = config
        self.db = database or Database(config.database_url)
        self.clock = clock_source
        self.functions = {**case_data.FUNCTIONS, **dict(functions or {})}
        self.hooks = hooks or Hooks()
        # External lanes whose participant a department acts for (declared by the service).
        self.proxies: dict[str, Proxy] = {}
        # Services built on the engine keep their per-engine state here (cf. Flask extensions).
        self.extensions: dict[str, Any] = {}
        self.script_engine = expressions.SafeScriptEngine(functions=self.functions)
        self._cache: OrderedDict[int, LiveCase] = OrderedDict()
        self._versions: dict[int, VersionSpecs] = {}
        self._lock = threading.Lock()
        # Live workflows changed by the current command, cached only once it commits.
        self._local = threading.local()

    def department_names(self) -> dict[str, str]:
        """Lane names a pack may use for departments (codes and full names) -> code."""
        with self.db.reading() as s:
            rows = s.execute(select(Department.code, Department.name)).all()
        names = {code: code for code, _ in rows}
        names.update({name: code for code, name in rows})
        return names

    def published_version(self, s: Session, process_id: str) -> ProcessVersion:
        """The version new cases of a process use."""
        version = s.scalar(select(ProcessVersion).where(
            ProcessVersion.process_id == process_id, ProcessVersion.status == "published")
            .order_by(ProcessVersion.number.desc()).limit(1))
        if version is None:
            raise ProcessNotFound(f"no published process with id {process_id!r}")
        return version

    def _version(self, s: Session, version_id: int) -> VersionSpecs:
        cached = self._versions.get(version_id)
        if cached is not None:
            return cached
        row = s.get(ProcessVersion, version_id)
        if row is None:
            raise ProcessNotFound(f"process version {version_id} does not exist")
        version = VersionSpecs(row.id, row.process_id, load_specs(row.spec), row.task_specs,
                           FormCatalogue.from_sources(row.sources))
        with self._lock:
            self._versions[version_id] = version
        return version

    def _version_of(self, version_id: int) -> VersionSpecs:
        cached = self._versions.get(version_id)
        if cached is not None:
            return cached
        with self.db.reading() as s:
            return self._version(s, version_id)

    def _apply(self, workflow: BpmnWorkflow, event_type: str, payload: dict[str, Any],
               case_id: int) -> None:
        """Re-run one recorded event; migrations re-bind to the version they name."""
        if event_type in MIGRATION_EVENTS:
            migration.migrate(workflow, self._version_of(int(payload["to_version_id"])).specs)
        else:
            apply_event(workflow, event_type, payload, case_id)

    @property
    def files(self) -> FileStore:
        """Where attachment contents are kept."""
        return FileStore(self.config.instance_dir / "attachments")

    def _task_command(self, task_id: str, actor: Actor, seen_version: int | None,
                      event_type: str, submitted: dict[str, Any],
                      on_behalf: OnBehalf | None = None) -> CaseView:
        now = self.clock()
        with self._unit() as s:
            case, rows = self._lock_task_case(s, task_id)
            row = rows[task_id]
            proxy = None
            if on_behalf is None:
                self._check_task_actor(row, actor)
            else:
                proxy = self._check_proxy(row, actor)
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
            version.forms.validate(meta.get("form"), submitted,
                                   today=now.astimezone(clock.SERVICE_TZ).date().isoformat())
            for hook in self.hooks.data_submitted:
                hook(s, DataSubmitted(case, row.spec_name, submitted, actor))
            payload: dict[str, Any] = {"task_id": task_id, "task_spec": row.spec_name,
                                       "data": submitted}
            if proxy is not None and on_behalf is not None:
                payload.update(self._proxied(s, case, row, actor, now, proxy, on_behalf))
            row.state, row.completed_at, row.completed_by = "completed", now, actor.username
            row.version += 1
            row.draft = None
            row.result = submitted
            others = {i: r for i, r in rows.items() if i != task_id and r.state == "ready"}
            view = self._change(s, case, actor, now, event_type, payload, done_task=row.id,
                                open_rows=others)
        return replace(view, completed_task=task_view(row, case.title))

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
                payload: dict[str, Any], done_task: str | None = None,
                open_rows: dict[str, HumanTask] | None = None) -> CaseView:
        """Apply one workflow-changing event to a locked case, then record it (`open_rows`:
        the case's other open task rows when the command already read them)."""
        version = self._version(s, case.process_version_id)
        live = self._live(s, case, version)
        self._derive(case, live)
        try:
            with clock.pinned(now), task_ids(live.ids), expressions.time_budget():
                with recorded.record() as calls, expressions.loop_scoping(True) as scoping:
                    apply_event(live.workflow, event_type, payload, case.id)
                still_open = self._after_change(s, case, live, version, now, done_task,
                                                open_rows)
            if calls:  # the reference data's answers, so a re-execution gets the same
                payload = {**payload, "calls": calls}
            if scoping.dropped:  # a re-execution drops the same loop-local names
                payload = {**payload, "loop_locals": True}
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
        return self._answer(s, case, live, still_open)

    def _store_attachment(self, s: Session, case: Case, row: HumanTask, actor: Actor,
                          now: datetime, name: str, content_type: str, content: bytes,
                          material: str | None, **recorded: Any) -> Attachment:
        """Keep a checked upload on a task and record it on the case's chain."""
        digest = self.files.put(content)
        attachment = Attachment(case_id=case.id, task_id=row.id, material=material or None,
                                filename=name, content_type=content_type,
                                size=len(content), sha256=digest,
                                uploaded_by=actor.username, uploaded_at=now)
        s.add(attachment)
        s.flush()
        self._record(s, case, None, NewEvent("attachment_added", actor.username, now, {
            "attachment_id": attachment.id, "task_id": row.id, "material": material,
            "filename": name, "size": len(content), "sha256": digest, **recorded}))
        return attachment

    def _answer(self, s: Session, case: Case, live: LiveCase, open_rows: list[HumanTask]
                ) -> CaseView:
        """The case after a command, with its open tasks and departments, without re-reading."""
        if live.departments is None:
            live.departments = {d for d in s.scalars(select(HumanTask.department).where(
                HumanTask.case_id == case.id).distinct()) if d}
        return case_view(case, open_tasks=open_task_views(open_rows, case.title),
                         departments=frozenset(live.departments))

    @property
    def _pending(self) -> list[tuple[int, LiveCase]]:
        pending: list[tuple[int, LiveCase]] | None = getattr(self._local, "pending", None)
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

    def _after_change(self, s: Session, case: Case, live: LiveCase, version: VersionSpecs,
                      now: datetime, done_task: str | None,
                      open_rows: dict[str, HumanTask] | None = None) -> list[HumanTask]:
        """Bring the task index, timers, status and data in line with the workflow; return
        the case's open task rows (`open_rows`: the other open rows, if already read)."""
        workflow = live.workflow
        scan = scan_tasks(workflow)
        ready = {str(t.id): t for t in scan.ready_manual}
        # The case's other open rows, read only when this process does not know there are
        # none (a sequential step: the task just done was the case's only open one).
        others = None if live.open_tasks is None else live.open_tasks - {done_task}
        if open_rows is None:
            open_rows = {} if others is not None and not others else {
                row.id: row for row in s.scalars(select(HumanTask).where(
                    HumanTask.case_id == case.id, HumanTask.state == "ready"))}
        still_open: list[HumanTask] = []
        for task_id, row in open_rows.items():
            if task_id not in ready and task_id != done_task:
                row.state, row.completed_at = "cancelled", now
                row.version += 1
            elif task_id != done_task:
                still_open.append(row)
        for task_id, task in ready.items():
            if task_id not in open_rows:
                row = self._index_row(case, version, task, now)
                for indexed in self.hooks.task_indexed:
                    indexed(row)
                s.add(row)
                still_open.append(row)
                if live.departments is not None and row.department:
                    live.departments.add(row.department)
                self._announce(s, case, version, task, row, now)
        live.open_tasks = {row.id for row in still_open}
        self._sync_timers(s, case, live)
        sync_elements(s, case, live)
        sync_interactions(self.functions, s, case, version, workflow, now)
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
        changed = CaseChanged(case_id=case.id, case_title=case.title, now=now,
                              open_tasks=tuple(still_open))
        for hook in self.hooks.case_changed:
            hook(s, changed)
        return still_open

    def _index_row(self, case: Case, version: VersionSpecs, task: Task, now: datetime
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
        item = item_of(task)
        phase = meta.get("phase") or item.get("phase")
        return HumanTask(
            id=str(task.id), case_id=case.id, process_id=process_id,
            spec_name=spec_name,
            title=meta.get("title") or task.task_spec.bpmn_name or spec_name,
            department=str(department), state="ready", version=1,
            form=meta.get("form"), item_code=item.get("code"), item_name=item.get("name"),
            phase=str(phase) if phase is not None else None, stage=meta.get("stage"),
            due_at=due, created_at=now, subject=subject_of(task),
            green_channel=bool(item.get("green_channel") or task.data.get("green_channel")))

    def _announce(self, s: Session, case: Case, version: VersionSpecs, task: Task, row: HumanTask,
                  now: datetime) -> None:
        """Tell the people a new task's `notify` property names, in the indexing transaction."""
        meta = version.task_specs.get(f"{row.process_id}:{row.spec_name}", {})
        targets = meta.get("notify") or []
        if not targets:
            return
        item_department = item_of(task).get("department")
        raised = TaskRaised(case_id=case.id, case_title=case.title, task=row,
                            item_department=str(item_department) if item_department else None,
                            targets=tuple(targets), now=now)
        for hook in self.hooks.task_raised:
            hook(s, raised)

    def _evaluate(self, task: Task, expression: str, names: dict[str, Any], what: str) -> Any:
        try:
            return expressions.evaluate(expression, task.data, self.functions)
        except (ValueError, LookupError, TypeError, ArithmeticError) as exc:
            raise WorkflowError(f"the {what} rule {expression!r} of task "
                                f"{task.task_spec.bpmn_name or task.task_spec.name} failed: "
                                f"{exc}") from exc

    def _sync_timers(self, s: Session, case: Case, live: LiveCase) -> None:
        wanted = wanted_timers(live.workflow)
        known = live.timers  # the case's timer rows as the last command left them, if known
        if known == wanted:
            return
        live.timers = wanted
        existing = known if known is not None else {
            t.task_id: (t.spec_name, t.due_at)
            for t in s.scalars(select(Timer).where(Timer.case_id == case.id))}
        gone = sorted(existing.keys() - wanted.keys())
        if gone:
            s.execute(delete(Timer).where(Timer.case_id == case.id, Timer.task_id.in_(gone)))
        for task_id, (name, due) in wanted.items():
            if task_id not in existing:
                s.add(Timer(case_id=case.id, task_id=task_id, spec_name=name, due_at=due))
            elif existing[task_id][1] != due:
                s.execute(update(Timer).where(Timer.case_id == case.id, Timer.task_id == task_id)
                          .values(due_at=due))

    def _record(self, s: Session, case: Case, live: LiveCase | None, new: NewEvent) -> None:
        seq = case.event_seq + 1
        event = audit.append(s, f"case:{case.id}", case.id, seq, case.last_hash, new)
        case.event_seq, case.last_hash = seq, event.hash
        if live is not None:
            live.event_seq = seq
        for hook in self.hooks.case_event:
            hook(s, case, event)

    def _snapshot(self, s: Session, case: Case, live: LiveCase, force: bool = False) -> None:
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

    def _live(self, s: Session, case: Case, version: VersionSpecs) -> LiveCase:
        """The case's workflow at its current state: from the cache, or rebuilt."""
        with self._lock:
            cached = self._cache.pop(case.id, None)
        hit = cached is not None and cached.state_version == case.state_version
        for hook in self.hooks.case_cache:
            hook(hit)
        if cached is not None and hit:
            return cached
        if cached is not None and cached.state_version < case.state_version:
            return self._catch_up(s, case, cached)
        snapshot = s.get(CaseSnapshot, case.id)
        if snapshot is None:
            events = list(s.scalars(select(Event).where(Event.stream == f"case:{case.id}")
                                    .order_by(Event.seq)))
            workflow, ids = self._reexecute(case.id, version, events, None)
            branch_data.note_steps_seen(workflow)
            return LiveCase(workflow, ids, case.state_version, case.event_seq, 0)
        workflow = load_state(snapshot.state, version.specs, self.script_engine,
                              self.config.max_instances)
        ids = IdSource(case_namespace(case.id), snapshot.id_counter)
        for event in s.execute(_WORKFLOW_EVENTS_BETWEEN, {
                "stream": f"case:{case.id}", "after": snapshot.event_seq,
                "upto": case.event_seq}):
            with clock.pinned(event.at), task_ids(ids):
                self._apply(workflow, event.type, event.data, case.id)
        branch_data.note_steps_seen(workflow)  # their commands stored the case's data
        return LiveCase(workflow, ids, case.state_version, case.event_seq, snapshot.event_seq)

    def _catch_up(self, s: Session, case: Case, live: LiveCase) -> LiveCase:
        """Bring a cached workflow that another process moved on up to date by re-running
        only the events it missed (cheaper than restoring the snapshot)."""
        missed = s.execute(_WORKFLOW_EVENTS_BETWEEN, {
            "stream": f"case:{case.id}", "after": live.event_seq, "upto": case.event_seq})
        for event in missed:
            with clock.pinned(event.at), task_ids(live.ids):
                self._apply(live.workflow, event.type, event.data, case.id)
        branch_data.note_steps_seen(live.workflow)  # the other process stored their data
        live.state_version, live.event_seq = case.state_version, case.event_seq
        # The other process's commands may have added departments (read again when needed);
        # the rows it kept in line with the workflow follow from the workflow caught up.
        live.departments = live.timers = live.elements = live.open_tasks = None
        live.caught_up = True
        return live

    @staticmethod
    def _derive(case: Case, live: LiveCase) -> None:
        """Work out a caught-up case's stored rows from its workflow, before a command
        changes it: the other process's command left the case's timers, element rows and
        ready task rows exactly as the workflow implies, so this one need not read them back.
        (Not after a restore from the snapshot: the case may not have run a command since
        element rows were kept, and those are then filled by the first command.)"""
        if not live.caught_up:
            return
        workflow = live.workflow
        live.timers = wanted_timers(workflow)
        live.elements, live.elements_version = reached_elements(workflow), case.process_version_id
        live.open_tasks = {str(task.id) for task in scan_tasks(workflow).ready_manual}
        live.caught_up = False

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

    def _reexecute(self, case_id: int, version: VersionSpecs, events: list[Event],
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
            workflow = new_workflow(version.specs, self.script_engine,
                                    self.config.max_instances)
        for event in events:
            if upto_seq is not None and event.seq > upto_seq:
                break
            if event.type in WORKFLOW_EVENTS:
                try:
                    with clock.pinned(event.at), task_ids(ids):
                        self._apply(workflow, event.type, event.data, case_id)
                except EngineError as exc:
                    raise ReplayFailed(exc.message, event.seq, event.id) from exc
            if after is not None:
                after(event, workflow)
        return workflow, ids

    def _remember(self, case_id: int, live: LiveCase) -> None:
        with self._lock:
            self._cache[case_id] = live
            self._cache.move_to_end(case_id)
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)

    @command()
    def index_elements(self, version_id: int) -> int:
        """Write the element rows of a version's cases that have none (cases started before
        migration 0018: the lazy backfill), each case in its own transaction; how many."""
        with self.db.reading() as s:
            missing = list(s.scalars(select(Case.id).where(
                Case.process_version_id == version_id,
                ~exists().where(CaseElement.case_id == Case.id)).order_by(Case.id)))
        for case_id in missing:
            with self._unit() as s:
                case = self._lock_case(s, case_id)
                live = self._live(s, case, self._version(s, case.process_version_id))
                live.elements = None  # read what is stored: a command may have written them
                sync_elements(s, case, live)
                self._pending.append((case_id, live))
        return len(missing)

    def _forget(self, case_id: int) -> None:
        with self._lock:
            self._cache.pop(case_id, None)

    @overload
    def _lock_case(self, s: Session, case_id: int) -> Case: ...

    @overload
    def _lock_case(self, s: Session, case_id: int, skip_locked: bool) -> Case | None: ...

    def _lock_case(self, s: Session, case_id: int, skip_locked: bool = False) -> Case | None:
        """Lock a case row (every command locks its case first); None if skipped as locked."""
        lock: bool | dict[str, bool] = self.db.postgres
        if lock and skip_locked:
            lock = {"skip_locked": True}
        case = s.get(Case, case_id, with_for_update=lock, populate_existing=True)
        if case is None:
            if skip_locked and s.get(Case, case_id) is not None:
                return None
            raise CaseNotFound(f"case {case_id} does not exist")
        return case

    def _lock_one_task(self, s: Session, task_id: str) -> tuple[Case, HumanTask]:
        """Lock the case of a task, then the task (a claim, a release, a hand-over): two
        statements on PostgreSQL, one on SQLite (its writer holds the whole database)."""
        if not self.db.postgres:
            row, case = self._task_and_case(s, task_id)
            return case, row
        locked: Case | None = s.scalars(_CASE_LOCKED, {"task_id": task_id}).first()
        held = None if locked is None else s.get(HumanTask, task_id, with_for_update=True,
                                                  populate_existing=True)
        if locked is None or held is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        return locked, held

    def _lock_task_case(self, s: Session, task_id: str
                        ) -> tuple[Case, dict[str, HumanTask]]:
        """Lock the case of a task (every command locks its case first, then its tasks),
        then read the task with the case's open tasks: two statements on PostgreSQL, one
        on SQLite (whose writer holds the whole database from BEGIN IMMEDIATE on).

        The rows are held in the dict: the session keeps them only weakly.
        """
        if not self.db.postgres:
            both: list[tuple[HumanTask, Case]] = [
                (row, case) for row, case in s.execute(_TASKS_WITH_CASE, {"task_id": task_id})]
            rows = {row.id: row for row, _ in both}
            if task_id not in rows:
                raise TaskNotFound(f"task {task_id} does not exist")
            return both[0][1], rows
        case: Case | None = s.scalars(_CASE_LOCKED, {"task_id": task_id}).first()
        if case is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        found: list[HumanTask] = list(s.scalars(_TASKS_LOCKED, {"task_id": task_id}))
        rows = {row.id: row for row in found}
        if task_id not in rows:  # moved or deleted in between (cannot happen: same case)
            raise TaskNotFound(f"task {task_id} does not exist")
        return case, rows

    def _task_row(self, s: Session, task_id: str, lock: bool = False) -> HumanTask:
        # On SQLite a writer holds the database from its first statement (BEGIN IMMEDIATE):
        # a row read earlier in the same transaction is current, so only PostgreSQL re-reads.
        relock = lock and self.db.postgres
        row = s.get(HumanTask, task_id, with_for_update=True if relock else None,
                    populate_existing=relock)
        if row is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        return row

    @staticmethod
    def _task_and_case(s: Session, task_id: str) -> tuple[HumanTask, Case]:
        """A task and its case, read together."""
        found = s.execute(_TASK_AND_CASE, {"task_id": task_id}).first()
        if found is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        return found[0], found[1]

    def _check_proxy(self, row: HumanTask, actor: Actor) -> Proxy:
        """The proxy under which the actor completes an external lane's task for its
        participant: Forbidden for a task of no external lane, or an actor it does not name."""
        proxy = self.proxies.get(row.department or "")
        if proxy is None:
            raise Forbidden("this task is not a task of an external participant; complete "
                            "it as your own task")
        if not proxy.allows(actor):
            raise Forbidden(f"only the agents of {proxy.department} may act for "
                            f"{proxy.lane}")
        return proxy

    def _proxied(self, s: Session, case: Case, row: HumanTask, actor: Actor, now: datetime,
                 proxy: Proxy, on_behalf: OnBehalf) -> dict[str, Any]:
        """Store a proxied completion's evidence (one `attachment_added` event each, before
        the completion) and return what the completion event records of it."""
        participant = proxy.participant_of(case.id)
        evidence = []
        for filename, content in on_behalf.evidence:
            name, content_type = check_upload(filename, content)
            attachment = self._store_attachment(s, case, row, actor, now, name, content_type,
                                                content, None, on_behalf_of=participant)
            evidence.append({"attachment_id": attachment.id, "filename": name,
                             "sha256": attachment.sha256})
        return {"on_behalf_of": participant,
                "confirmation": {**plain_data(on_behalf.confirmation), "evidence": evidence}}

    @staticmethod
    def _check_task_actor(row: HumanTask, actor: Actor) -> None:
        if not actor.may_see_task(row.department):
            raise TaskNotFound(f"task {row.id} does not exist")
        if not actor.may_work_on(row.department):
            raise Forbidden("this task belongs to another department; only its agents may "
                            "claim or complete it")

    @staticmethod
    def _not_ready_message(row: HumanTask) -> str:
        if row.state == "completed" and row.completed_at is not None:
            # In the service's time zone, as every page shows times, the zone named.
            local = row.completed_at.astimezone(clock.SERVICE_TZ)
            return (f"this task was already completed by {row.completed_by} at "
                    f"{local:%Y-%m-%d %H:%M} ({local.tzname()}); nothing was changed")
        return f"this task is no longer open ({row.state}); nothing was changed"

    @staticmethod
    def _case_and_events(s: Session, case_id: int) -> tuple[Case, list[Event]]:
        case = s.get(Case, case_id)
        if case is None:
            raise CaseNotFound(f"case {case_id} does not exist")
        events = list(s.scalars(select(Event).where(Event.stream == f"case:{case_id}")
                                .order_by(Event.seq)))
        return case, events

