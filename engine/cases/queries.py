"""Read queries: task lists and counts, case lists, a task with its context, element states."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from engine.actors import STARTERS, Actor
from engine.cases.verification import Verifying
from engine.cases.views import (
    TASK_ORDERS,
    CaseView,
    CommentView,
    StartForm,
    TaskCounts,
    TaskDetail,
    TaskView,
    attachment_view,
    case_filters,
    case_view,
    task_filters,
    task_view,
)
from engine.cases.workflow import (
    drawn_in,
    process_ids,
    process_instances,
    states_by_element,
    task_data,
)
from engine.errors import (
    CaseNotFound,
    EngineError,
    NotFound,
    TaskNotFound,
)
from engine.pack.loader import (
    start_form_files,
)
from engine.store.files import AttachmentView
from engine.store.models import (
    Attachment,
    Case,
    Event,
    HumanTask,
    ProcessVersion,
    TaskTally,
)

# What a task list shows of each task (`task_view` reads these by name).
TASK_LIST_COLUMNS = (
    HumanTask.id, HumanTask.case_id, HumanTask.process_id, HumanTask.spec_name,
    HumanTask.title, HumanTask.department, HumanTask.assignee, HumanTask.state,
    HumanTask.version, HumanTask.form, HumanTask.item_code, HumanTask.item_name,
    HumanTask.phase, HumanTask.stage, HumanTask.due_at, HumanTask.created_at,
    HumanTask.completed_at, HumanTask.completed_by, HumanTask.green_channel)


@dataclass(frozen=True)
class _Listing:
    """The statements of one shape of task list, its filter values left as parameters."""

    by_age: Select[*tuple[Any, ...]]
    dated: Select[*tuple[Any, ...]]
    undated: Select[*tuple[Any, ...]]
    dated_count: Select[*tuple[Any, ...]]


_LISTINGS: dict[tuple[tuple[str, ...], bool, frozenset[str]], _Listing] = {}


def _listing(states: tuple[str, ...], green_only: bool, given: frozenset[str]) -> _Listing:
    """The task-list statements for the filters given, built once per shape: SQLAlchemy
    keys its compiled-statement cache on the statement, and keying one built anew for
    every page cost more than running it."""
    key = (states, green_only, given)
    listing = _LISTINGS.get(key)
    if listing is not None:
        return listing
    bound: dict[str, Any] = {name: bindparam(name) if name in given else None
                             for name in ("department", "assignee", "case_id", "phase",
                                          "item_code", "due_before", "open_to",
                                          "process_id", "stage")}
    query = task_filters(select(*TASK_LIST_COLUMNS, Case.title.label("case_title"))
                         .join(Case, Case.id == HumanTask.case_id),
                         states=states, green_only=green_only, **bound)
    limit, offset = bindparam("limit", type_=Integer), bindparam("offset", type_=Integer)
    listing = _Listing(
        by_age=query.order_by(HumanTask.created_at, HumanTask.id).limit(limit).offset(offset),
        dated=query.where(HumanTask.due_at.is_not(None))
        .order_by(HumanTask.due_at, HumanTask.created_at, HumanTask.id)
        .limit(limit).offset(offset),
        undated=query.where(HumanTask.due_at.is_(None))
        .order_by(HumanTask.created_at, HumanTask.id).limit(limit).offset(offset),
        dated_count=select(func.count()).select_from(
            query.where(HumanTask.due_at.is_not(None)).subquery()))
    if len(_LISTINGS) < 512:  # shapes are few; never grow without bound
        _LISTINGS[key] = listing
    return listing


def _tallied(*values: str | None) -> bool:
    """Whether filters with these values can be answered from the tally, whose keys hold
    '' for NULL: not when a filter asks for ''."""
    return "" not in values


def _tally_filters(*, department: str | None = None, assignee: str | None = None,
                   phase: str | None = None, item_code: str | None = None,
                   process_id: str | None = None, stage: str | None = None,
                   open_to: str | None = None) -> list[ColumnElement[bool]]:
    """The tally rows of the ready tasks `task_filters` would keep with these filters."""
    given = ((TaskTally.department, department), (TaskTally.assignee, assignee),
             (TaskTally.phase, phase), (TaskTally.item_code, item_code),
             (TaskTally.process_id, process_id), (TaskTally.stage, stage))
    found = [column == value for column, value in given if value is not None]
    if open_to is not None:  # nobody's, or the user's own
        found.append(TaskTally.assignee.in_(("", open_to)))
    return found


class Queries(Verifying):
    """Read-only questions about cases and tasks; never writes."""

    def get_case(self, case_id: int) -> CaseView:
        """A case's status and data."""
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            return case_view(case)

    def list_tasks(self, *, department: str | None = None, assignee: str | None = None,
                   case_id: int | None = None, states: Iterable[str] = ("ready",),
                   limit: int = 50, offset: int = 0, phase: str | None = None,
                   item_code: str | None = None, due_before: datetime | None = None,
                   open_to: str | None = None, order: str = "due",
                   green_only: bool = False, process_id: str | None = None,
                   stage: str | None = None) -> list[TaskView]:
        """Human tasks from the index, filtered and paged in SQL.

        `open_to` keeps the tasks nobody claimed plus those claimed by that user;
        `due_before` keeps tasks due before that moment (pass now for the overdue ones);
        `order` is "due" (soonest due first) or "age" (oldest first); `green_only` keeps
        the tasks of green-channel items.
        """
        if order not in TASK_ORDERS:
            raise EngineError(f"unknown task order {order!r}")
        # The listed columns only, as plain rows: no ORM objects, no JSON columns decoded.
        given = {"department": department, "assignee": assignee, "case_id": case_id,
                 "phase": phase, "item_code": item_code, "due_before": due_before,
                 "open_to": open_to, "process_id": process_id, "stage": stage}
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        listing = _listing(tuple(states), green_only, frozenset(params))
        with self.db.reading() as s:
            if order == "age":
                rows = list(s.execute(listing.by_age,
                                      {**params, "limit": limit, "offset": offset}))
                return [task_view(row, row.case_title) for row in rows]
            # Soonest due first, tasks without a due date last. Two index-ordered queries
            # instead of one `ORDER BY due_at IS NULL, ...`, which no index can serve (the
            # whole department's tasks would be sorted for every inbox page).
            # (The undated band is read only when the dated one does not fill the page: one
            # statement for a full page. Reading both bands at once in a UNION made every
            # first page scan the department's undated tasks: 0.8 -> 13 ms at 10,000 cases.)
            rows = list(s.execute(listing.dated, {**params, "limit": limit, "offset": offset}))
            if len(rows) < limit:
                skip = 0
                if not rows and offset:  # the page starts inside the undated tasks
                    dated = s.scalar(listing.dated_count, params) or 0
                    skip = max(0, offset - dated)
                rows += list(s.execute(listing.undated, {**params, "limit": limit - len(rows),
                                                         "offset": skip}))
            return [task_view(row, row.case_title) for row in rows]

    def count_tasks(self, *, department: str | None = None, assignee: str | None = None,
                    case_id: int | None = None, states: Iterable[str] = ("ready",),
                    phase: str | None = None, item_code: str | None = None,
                    due_before: datetime | None = None, open_to: str | None = None,
                    green_only: bool = False, process_id: str | None = None,
                    stage: str | None = None) -> int:
        """How many tasks `list_tasks` would list with the same filters, without paging.

        Ready tasks filtered by the tally's keys only (an inbox's own filters) are added
        up from the tally, whatever the backlog; other filters count the task rows."""
        keys = {"department": department, "assignee": assignee, "phase": phase,
                "item_code": item_code, "process_id": process_id, "stage": stage}
        if (tuple(states) == ("ready",) and case_id is None and due_before is None
                and not green_only and _tallied(*keys.values(), open_to)):
            query = select(func.coalesce(func.sum(TaskTally.n), 0)).where(
                *_tally_filters(**keys, open_to=open_to))
        else:
            query = task_filters(
                select(func.count()).select_from(HumanTask), department=department,
                assignee=assignee, case_id=case_id, states=states, phase=phase,
                item_code=item_code, due_before=due_before, open_to=open_to,
                green_only=green_only, process_id=process_id, stage=stage)
        with self.db.reading() as s:
            return int(s.scalar(query) or 0)

    def task_counts(self, username: str, *, department: str | None = None,
                    open_to: str | None = None) -> TaskCounts:
        """Open tasks of an inbox (a department's, or all when None): ready, claimed by
        the user, past due.

        The first two are added up from the tally; the overdue ones are counted in the
        (department, state, due date) index, so they cost what is overdue, not the backlog.
        One statement."""
        if not _tallied(department, username, open_to):  # '' is no key: count the rows
            return self._counted(username, department=department, open_to=open_to)
        now = self.clock()
        in_tally = _tally_filters(department=department)
        visible = TaskTally.assignee.in_(("", open_to)) if open_to is not None else true()
        overdue = task_filters(
            select(func.count()).select_from(HumanTask).where(HumanTask.due_at < now),
            department=department, assignee=None, case_id=None, states=("ready",),
            phase=None, item_code=None, due_before=None, open_to=open_to)
        query = select(
            select(func.coalesce(func.sum(TaskTally.n), 0)).where(*in_tally, visible)
            .scalar_subquery(),
            select(func.coalesce(func.sum(TaskTally.n), 0))
            .where(*in_tally, TaskTally.assignee == username).scalar_subquery(),
            overdue.scalar_subquery())
        with self.db.reading() as s:
            ready, mine, late = s.execute(query).one()
        return TaskCounts(ready=int(ready), claimed_by_me=int(mine), overdue=int(late))

    def _counted(self, username: str, *, department: str | None,
                 open_to: str | None) -> TaskCounts:
        """`task_counts` by counting the department's open tasks."""
        now = self.clock()
        visible = (or_(HumanTask.assignee.is_(None), HumanTask.assignee == open_to)
                   if open_to is not None else true())
        query = task_filters(
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
        """The phases and items (code, name) of a department's open tasks, for filters
        (from the tally: a department's keys, not its tasks)."""
        if not _tallied(department):
            base = select(HumanTask.phase, HumanTask.item_code, HumanTask.item_name).where(
                HumanTask.state == "ready", HumanTask.department == department)
        else:
            base = select(TaskTally.phase, TaskTally.item_code, TaskTally.item_name).where(
                *_tally_filters(department=department))
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
        query = case_filters(select(Case), search, statuses, department
                              ).order_by(Case.id.desc())
        with self.db.reading() as s:
            return [case_view(c) for c in s.scalars(query.limit(limit).offset(offset))]

    def count_cases(self, *, search: str | None = None,
                    statuses: Iterable[str] = ("running",), department: str | None = None
                    ) -> int:
        """How many cases `list_cases` would list, without paging."""
        query = case_filters(select(func.count()).select_from(Case), search, statuses,
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
                if actor.is_system or (startable and actor.role in STARTERS)]

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

    def acts_for(self, department: str | None, actor: Actor) -> bool:
        """Whether the actor may complete `department`'s tasks on its participant's behalf
        (the department is an external lane whose proxy names the actor)."""
        proxy = self.proxies.get(department or "")
        return proxy is not None and proxy.allows(actor)

    def may_see_case(self, case_id: int, actor: Actor) -> bool:
        """Whether the actor may read a case: the office, administrators and auditors see
        every case; agents and leaders the cases where their department holds or held a task
        or takes part by the service's account (`hooks.case_departments`: the agency's
        items), and the cases they started."""
        if actor.is_system or actor.role in ("office", "admin", "auditor"):
            return True
        if actor.role not in ("agent", "leader"):
            return False
        with self.db.reading() as s:
            if s.scalar(select(Case.id).where(Case.id == case_id,
                                              Case.started_by == actor.username)) is not None:
                return True
            if actor.department is None:
                return False
            found = s.scalar(select(HumanTask.id).where(
                HumanTask.case_id == case_id, HumanTask.department == actor.department)
                .limit(1))
            if found is None and self.hooks.case_departments:
                case = s.get(Case, case_id)
                return case is not None and any(
                    actor.department in set(hook(case)) for hook in self.hooks.case_departments)
        return found is not None

    def check_case_visible(self, case_id: int, actor: Actor) -> CaseView:
        """The case, if the actor may read it: CaseNotFound both for a missing case and for
        one the actor may not read."""
        case = self.get_case(case_id)
        if not self.may_see_case(case_id, actor):
            # the same answer as for a missing case: an outsider learns nothing from an id
            raise CaseNotFound(f"case {case_id} does not exist")
        return case

    def list_attachments(self, *, case_id: int, task_id: str | None = None
                         ) -> list[AttachmentView]:
        """A case's attachments (or one task's), oldest first."""
        query = select(Attachment).where(Attachment.case_id == case_id)
        if task_id is not None:
            query = query.where(Attachment.task_id == task_id)
        with self.db.reading() as s:
            return [attachment_view(a) for a in s.scalars(query.order_by(Attachment.id))]

    def get_attachment(self, attachment_id: int, actor: Actor) -> tuple[AttachmentView, Path]:
        """An attachment and the file holding it, for an actor who may read its case."""
        with self.db.reading() as s:
            row = s.get(Attachment, attachment_id)
            if row is None:
                raise NotFound(f"attachment {attachment_id} does not exist")
            view = attachment_view(row)
        if not self.may_see_case(view.case_id, actor):
            raise NotFound(f"attachment {attachment_id} does not exist")
        return view, self.files.path(view.sha256)

    def get_task(self, task_id: str, actor: Actor) -> TaskDetail:
        """A task with its form and the case data it shows (actor must be allowed to see it)."""
        with self.db.reading() as s:
            row, case = self._task_and_case(s, task_id)
            # Whoever reads the case reads (never changes) its tasks, whatever their state
            # and department: every task a case page links to opens for its readers. For
            # the others a task reads as missing, like tasks that do not exist. A draft is
            # the owning department's work in progress: only those who see the task as
            # theirs (or oversee it) read it.
            own = actor.may_see_task(row.department) or self.acts_for(row.department, actor)
            if not (own or self.may_see_case(row.case_id, actor)):
                raise TaskNotFound(f"task {task_id} does not exist")
            version = self._version(s, case.process_version_id)
            meta = version.task_specs.get(f"{row.process_id}:{row.spec_name}", {})
            data: dict[str, Any] = {}
            if row.state == "ready":
                data = self._read(s, case, lambda wf: task_data(wf, row.id))
            elif row.state == "completed":
                data = dict(row.result or {})  # what was submitted
            return TaskDetail(
                task=task_view(row, case.title),
                form_schema=version.forms.schema(meta.get("form")),
                ui_schema=version.forms.schema(meta.get("uischema")),
                instructions=meta.get("instructions", ""), data=data,
                draft=row.draft if own else None)

    def element_states(self, case_id: int, upto_seq: int | None = None
                       ) -> dict[str, dict[str, list[str]]]:
        """BPMN element ids by state (completed, active, waiting), per process of the case.

        With `upto_seq`, the states are those after that event, rebuilt by re-execution.
        """
        if upto_seq is not None:
            return states_by_element(self.replay(case_id, upto_seq))
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            return self._read(s, case, states_by_element)

    def case_instances(self, case_id: int) -> dict[str, dict[str, Any]]:
        """The case's process instances, each with its own element states (see
        workflow.process_instances): which item's called process is where."""
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            return self._read(s, case, process_instances)

    def waiting_data(self, case_id: int, spec_name: str, names: Iterable[str]
                     ) -> list[dict[str, Any]]:
        """The named fields of each of the case's `spec_name` tasks that wait for an event
        (e.g. an item waiting for its prerequisites), in the order they were created."""
        wanted = tuple(names)

        def read(workflow: BpmnWorkflow) -> list[dict[str, Any]]:
            return [{name: copy.deepcopy(task.data.get(name)) for name in wanted}
                    for task in workflow.get_tasks(state=TaskState.WAITING,
                                                   spec_name=spec_name)]

        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"case {case_id} does not exist")
            return self._read(s, case, read)

    def embedded_processes(self, version_id: int) -> dict[str, str]:
        """A version's embedded sub-processes: spec name -> the process that draws them."""
        specs = self._version_of(version_id).specs
        return drawn_in(specs.process_spec, specs.subprocess_specs)

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
                for process_id in process_ids(text):
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

    def list_comments(self, case_id: int, task_id: str | None = None) -> list[CommentView]:
        """The comments on a case (or on one of its tasks), oldest first."""
        comments = [CommentView(e.seq, case_id, e.data.get("task_id"), str(e.data["text"]),
                                e.actor, e.at)
                    for e in self.case_events(case_id, types=("comment_added",))]
        return [c for c in comments if task_id is None or c.task_id == task_id]

    def case_events(self, case_id: int, types: tuple[str, ...] | None = None) -> list[Event]:
        """A case's audit events in order."""
        with self.db.reading() as s:
            query = select(Event).where(Event.stream == f"case:{case_id}")
            if types is not None:
                query = query.where(Event.type.in_(types))
            return list(s.scalars(query.order_by(Event.seq)))

