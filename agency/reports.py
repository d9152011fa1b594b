"""Read-only queries for auditors: case search, a process version's heatmap, the operations log."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, String, and_, case, cast, func, or_, select

from engine.cases import Engine
from engine.errors import NotFound
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Case, CaseElement, Event, HumanTask, ProcessVersion


@dataclass(frozen=True)
class CaseQuery:
    """What an auditor searches cases by; empty fields do not filter."""

    project: str = ""  # part of the project name or its code
    enterprise: str = ""
    department: str = ""  # held a task in the case
    agent: str = ""  # completed or holds a task in the case
    item: str = ""  # an approval item's code or part of its name
    status: str = ""
    started_from: date | None = None  # local dates, both inclusive
    started_to: date | None = None
    overdue: bool = False  # a task open past its due date, or completed after it


@dataclass(frozen=True)
class CaseRow:
    """A case as the search lists it."""

    id: int
    title: str
    project_code: str | None
    enterprise: str
    process_id: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    events: int


@dataclass(frozen=True)
class CasePage:
    """One page of search results and the total number of matches."""

    rows: list[CaseRow]
    total: int


def _enterprise() -> Any:
    return Case.data["project"]["enterprise"].as_string()


def _case_filter(query: CaseQuery, now: datetime) -> list[Any]:
    conditions: list[Any] = []
    if query.project:
        like = f"%{query.project}%"
        conditions.append(or_(Case.title.like(like), Case.project_code.like(like)))
    if query.enterprise:
        conditions.append(_enterprise().like(f"%{query.enterprise}%"))
    # Cases with a matching task: one uncorrelated subquery each (served by an index on
    # the task column), not an EXISTS per case, which the planner may answer by scanning
    # every task of the department for each case (quadratic in the number of cases).
    def having_task(*where: Any) -> Any:
        return Case.id.in_(select(HumanTask.case_id).where(*where))

    if query.department:
        conditions.append(having_task(HumanTask.department == query.department))
    if query.agent:
        conditions.append(or_(having_task(HumanTask.completed_by == query.agent),
                              having_task(HumanTask.assignee == query.agent)))
    if query.item:
        conditions.append(having_task(or_(HumanTask.item_code == query.item,
                                          HumanTask.item_name.like(f"%{query.item}%"))))
    if query.status:
        conditions.append(Case.status == query.status)
    if query.started_from:
        conditions.append(Case.started_at >= _local_midnight(query.started_from))
    if query.started_to:
        conditions.append(Case.started_at < _local_midnight(query.started_to + timedelta(1)))
    if query.overdue:
        conditions.append(having_task(HumanTask.due_at.is_not(None), or_(
            and_(HumanTask.state == "ready", HumanTask.due_at < now),
            and_(HumanTask.state == "completed", HumanTask.completed_at > HumanTask.due_at))))
    return conditions


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=SERVICE_TZ)


def search_cases(engine: Engine, query: CaseQuery, *, limit: int = 20, offset: int = 0
                 ) -> CasePage:
    """Cases matching every given criterion, newest first, one page at a time."""
    conditions = _case_filter(query, engine.clock())
    events = (select(func.count()).where(Event.case_id == Case.id)
              .correlate(Case).scalar_subquery())
    rows: Select[Any] = (select(Case.id, Case.title, Case.project_code, _enterprise(),
                                Case.process_id, Case.status, Case.started_at, Case.ended_at,
                                events)
                         .where(*conditions).order_by(Case.started_at.desc(), Case.id.desc())
                         .limit(limit).offset(offset))
    with engine.db.reading() as s:
        total = s.scalar(select(func.count()).select_from(Case).where(*conditions)) or 0
        found = [CaseRow(id=r[0], title=r[1], project_code=r[2], enterprise=r[3] or "",
                         process_id=r[4], status=r[5], started_at=r[6], ended_at=r[7],
                         events=r[8]) for r in s.execute(rows)]
    return CasePage(found, total)


def search_choices(engine: Engine) -> dict[str, list[tuple[str, str]]]:
    """The departments, agents and items that occur in the task index, for the search form."""
    with engine.db.reading() as s:
        departments = sorted(d for d in s.scalars(select(HumanTask.department).distinct()) if d)
        agents = sorted(a for a in s.scalars(select(HumanTask.completed_by).distinct()) if a)
        items = sorted((c, n or c) for c, n in s.execute(
            select(HumanTask.item_code, HumanTask.item_name).distinct()) if c)
    return {"departments": [(d, d) for d in departments], "agents": [(a, a) for a in agents],
            "items": sorted(set(items))}


@dataclass(frozen=True)
class ElementHeat:
    """How many cases reached an element, and how long its user tasks took."""

    cases: int = 0
    tasks_done: int = 0
    tasks_open: int = 0
    median_hours: float | None = None
    max_hours: float | None = None


@dataclass(frozen=True)
class Heatmap:
    """A process version's diagrams with per-element counts and durations."""

    process_id: str
    version: int
    name: str
    cases: int
    diagrams: dict[str, str]
    elements: dict[str, dict[str, ElementHeat]] = field(default_factory=dict)

    @property
    def slowest(self) -> list[tuple[str, str, ElementHeat]]:
        """User tasks by median time spent, longest first."""
        found = [(pid, eid, heat) for pid, by_id in self.elements.items()
                 for eid, heat in by_id.items() if heat.median_hours is not None]
        return sorted(found, key=lambda f: f[2].median_hours or 0.0, reverse=True)


def process_versions(engine: Engine) -> list[tuple[str, int, str, str, int]]:
    """Every process version with its status and the number of cases started on it."""
    counts = (select(func.count()).where(Case.process_version_id == ProcessVersion.id)
              .correlate(ProcessVersion).scalar_subquery())
    with engine.db.reading() as s:
        return [(r[0], r[1], r[2], r[3], r[4]) for r in s.execute(
            select(ProcessVersion.process_id, ProcessVersion.number, ProcessVersion.name,
                   ProcessVersion.status, counts)
            .order_by(ProcessVersion.process_id, ProcessVersion.number.desc()))]


def process_heatmap(engine: Engine, process_id: str, number: int) -> Heatmap:
    """Per element of a version's diagrams: cases that reached it, median hours in its tasks.

    Counts come from the elements each case reached (rows every command keeps, migration
    0018; cases from before it are indexed here once); durations from the task index
    (created to completed). Both are aggregates: nothing is rebuilt per case.
    """
    with engine.db.reading() as s:
        version = s.scalar(select(ProcessVersion).where(
            ProcessVersion.process_id == process_id, ProcessVersion.number == number))
        if version is None:
            raise NotFound(f"process {process_id!r} has no version {number}")
        version_id, name, sources = version.id, version.name, version.sources
        first = s.scalar(select(func.min(Case.id)).where(Case.process_version_id == version_id))
    indexed = engine.extensions.setdefault("heatmap_versions_indexed", set())
    if first is not None and version_id not in indexed:
        # Once per process and version: every command writes its case's rows, so only
        # cases from before migration 0018 can lack them.
        engine.index_elements(version_id)
        indexed.add(version_id)
    with engine.db.reading() as s:
        cases = s.scalar(select(func.count()).select_from(Case).where(
            Case.process_version_id == version_id)) or 0
        reached = {(p, b): n for p, b, n in s.execute(
            select(CaseElement.process_id, CaseElement.bpmn_id, func.count())
            .where(CaseElement.process_version_id == version_id)
            .group_by(CaseElement.process_id, CaseElement.bpmn_id))}
        # The version's open and finished tasks per element in one pass over one index, in
        # its order (migration 0023: no join, no sort); `case_id + 0` keeps the database from
        # reading them case by case instead. Each element's durations come as one text (the
        # median needs them all), not one row per finished task.
        done = and_(HumanTask.state == "completed", HumanTask.completed_at.is_not(None))
        open_tasks: dict[tuple[str, str], int] = {}
        durations: dict[tuple[str, str], list[float]] = {}
        for p, t, n, joined in s.execute(
                select(HumanTask.process_id, HumanTask.spec_name,
                       func.count(case((HumanTask.state == "ready", 1))),
                       _joined(engine, case((done, _hours(engine)))))
                .where((HumanTask.case_id + 0).in_(select(Case.id).where(
                    Case.process_version_id == version_id)),
                       HumanTask.state.in_(("ready", "completed")))
                .group_by(HumanTask.process_id, HumanTask.spec_name)):
            if n:
                open_tasks[(p, t)] = n
            if joined is not None:
                durations[(p, t)] = [float(h) for h in str(joined).split(",")]
    diagrams = engine.case_diagrams(first) if first is not None else _version_diagrams(
        engine, sources, process_id)
    # Elements of an embedded sub-process are drawn in the diagram of the process around it
    # (its tasks are indexed under the sub-process, which SpiffWorkflow runs as its own).
    drawn = engine.embedded_processes(version_id)
    if drawn:
        reached, open_tasks, durations = _drawn(reached, drawn), _drawn(open_tasks, drawn), \
            _drawn(durations, drawn)
    elements: dict[str, dict[str, ElementHeat]] = defaultdict(dict)
    for key in set(reached) | set(durations) | set(open_tasks):
        hours = durations.get(key, [])
        elements[key[0]][key[1]] = ElementHeat(
            cases=reached.get(key, 0), tasks_done=len(hours), tasks_open=open_tasks.get(key, 0),
            median_hours=round(statistics.median(hours), 2) if hours else None,
            max_hours=round(max(hours), 2) if hours else None)
    return Heatmap(process_id, number, name, cases, diagrams, dict(elements))


def _drawn(by_element: dict[tuple[str, str], Any], drawn: dict[str, str]
           ) -> dict[tuple[str, str], Any]:
    """Figures by (process, element) with embedded sub-processes folded into the process
    that draws them (counts added, durations joined)."""
    folded: dict[tuple[str, str], Any] = {}
    for (process, element), value in by_element.items():
        key = (drawn.get(process, process), element)
        folded[key] = folded[key] + value if key in folded else value
    return folded


def _joined(engine: Engine, value: Any) -> Any:
    """The values of a group as one comma-separated text."""
    if engine.db.postgres:
        return func.string_agg(cast(value, String), ",")
    return func.group_concat(value, ",")


def _hours(engine: Engine) -> Any:
    """Hours from a task's creation to its completion, computed by the database."""
    if engine.db.postgres:
        return func.extract("epoch", HumanTask.completed_at - HumanTask.created_at) / 3600.0
    return (func.julianday(HumanTask.completed_at) - func.julianday(HumanTask.created_at)) * 24.0


def _version_diagrams(engine: Engine, sources: dict[str, Any], process_id: str
                      ) -> dict[str, str]:
    from engine.cases.workflow import process_ids

    return {pid: text for name, text in sources.items() if name.endswith(".bpmn")
            for pid in process_ids(text) if pid == process_id}


@dataclass(frozen=True)
class OpsPage:
    """A page of the operations log and whether its chain verifies."""

    events: list[Event]
    total: int
    chain_ok: bool
    chain_problem: str | None
    first_bad_seq: int | None


def ops_log(engine: Engine, *, limit: int = 50, offset: int = 0) -> OpsPage:
    """Administrators' operations, newest first, with the check of their hash chain."""
    from engine.audit.chain import verify_events

    with engine.db.reading() as s:
        chain = list(s.scalars(select(Event).where(Event.stream == "ops").order_by(Event.seq)))
    broken = verify_events(chain)
    newest = list(reversed(chain))[offset:offset + limit]
    return OpsPage(newest, len(chain), broken is None, broken.reason if broken else None,
                   broken.seq if broken else None)
