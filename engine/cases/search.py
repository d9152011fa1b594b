"""Read queries for integrating systems: case search with totals, a case's timers and versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from sqlalchemy import Select, func, select

from engine.cases.store import CaseStore
from engine.cases.views import CaseView, case_view
from engine.errors import EngineError
from engine.store.models import Case, HumanTask, ProcessVersion, Timer

CASE_STATUSES = ("running", "completed", "terminated")


@dataclass(frozen=True)
class CaseQuery:
    """What a case search may filter on (every filter optional)."""

    statuses: tuple[str, ...] = CASE_STATUSES
    process_id: str | None = None
    project_code: str | None = None
    department: str | None = None
    overdue: bool = False
    started_from: datetime | None = None
    started_before: datetime | None = None
    text: str | None = None


@dataclass(frozen=True)
class TimerView:
    """A timer waiting in a case: when it is due and what it is."""

    task_id: str
    element: str
    name: str
    kind: str
    attached_to: str | None
    cancels: bool | None
    due_at: datetime


class CaseSearch(CaseStore):
    """Searching cases and reading a case's timers."""

    def search_cases(self, query: CaseQuery, *, limit: int = 50, offset: int = 0
                     ) -> tuple[list[CaseView], int]:
        """Cases matching every given filter, newest first, and how many match in all."""
        unknown = set(query.statuses) - set(CASE_STATUSES)
        if unknown:
            raise EngineError(f"unknown case status {', '.join(sorted(unknown))}")
        now = self.clock()
        with self.db.reading() as s:
            rows = list(s.scalars(self._filtered(select(Case), query, now)
                                  .order_by(Case.id.desc()).limit(limit).offset(offset)))
            total = s.scalar(self._filtered(select(func.count()).select_from(Case), query,
                                            now)) or 0
            return [case_view(row) for row in rows], int(total)

    @staticmethod
    def _filtered(base: Select[Any], query: CaseQuery, now: datetime) -> Select[Any]:
        found = base.where(Case.status.in_(query.statuses))
        if query.process_id:
            found = found.where(Case.process_id == query.process_id)
        if query.project_code:
            found = found.where(Case.project_code == query.project_code)
        if query.department:
            found = found.where(Case.id.in_(select(HumanTask.case_id).where(
                HumanTask.department == query.department)))
        if query.overdue:
            found = found.where(Case.id.in_(select(HumanTask.case_id).where(
                HumanTask.state == "ready", HumanTask.due_at < now)))
        if query.started_from is not None:
            found = found.where(Case.started_at >= query.started_from)
        if query.started_before is not None:
            found = found.where(Case.started_at < query.started_before)
        if query.text:
            escaped = query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found = found.where(Case.title.like(f"%{escaped}%", escape="\\"))
        return found

    def case_timers(self, case_id: int) -> list[TimerView]:
        """The timers waiting in a case, soonest first, with the element each belongs to."""
        with self.db.reading() as s:
            case = s.get(Case, case_id)
            if case is None:
                return []
            version = self._version(s, case.process_version_id)
            timers = list(s.scalars(select(Timer).where(Timer.case_id == case_id)
                                    .order_by(Timer.due_at, Timer.id)))
        specs = [version.specs.process_spec, *version.specs.subprocess_specs.values()]
        found: list[TimerView] = []
        for timer in timers:
            spec = next((p.task_specs[timer.spec_name] for p in specs
                         if timer.spec_name in p.task_specs), None)
            boundary = isinstance(spec, BoundaryEvent)
            attached = None
            if boundary and spec is not None and spec.inputs:
                attached = next((o for o in spec.inputs[0].outputs
                                 if not isinstance(o, BoundaryEvent)), None)
            found.append(TimerView(
                task_id=timer.task_id, element=getattr(spec, "bpmn_id", None) or timer.spec_name,
                name=getattr(spec, "bpmn_name", None) or timer.spec_name,
                kind="boundary" if boundary else "intermediate",
                attached_to=(getattr(attached, "bpmn_name", None) or attached.name)
                if attached is not None else None,
                cancels=bool(getattr(spec, "cancel_activity", False)) if boundary else None,
                due_at=timer.due_at))
        return found

    def process_versions(self, process_id: str) -> list[ProcessVersion]:
        """Every stored version of a process, newest first (detached rows)."""
        with self.db.reading() as s:
            rows = list(s.scalars(select(ProcessVersion).where(
                ProcessVersion.process_id == process_id).order_by(
                ProcessVersion.number.desc())))
            s.expunge_all()
        return rows
