"""Follow-up records: visits, meetings, symposiums, policy redemption, public opinions,
and the policy consultations and after-service follow-ups agents record on a case.

A record is a completed task of a given kind with the data submitted for it (kept on
the task index); the items it raised are the tracked tasks of the same case created
after it and before the next record of that kind, followed until done. Consultations and
follow-ups are not tasks: an agent writes them on the case, each a hash-chained case event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from engine.actors import Actor
from engine.audit.chain import NewEvent
from engine.cases import Engine
from engine.errors import N_, FieldError, Forbidden, InvalidData
from engine.runtime.clock import SERVICE_TZ
from engine.store.models import Case, Event, HumanTask

SCAN_LIMIT = 5000


@dataclass(frozen=True)
class Kind:
    """One kind of follow-up record."""

    code: str
    title: str
    record_specs: tuple[str, ...]
    raised_specs: tuple[str, ...]
    context_specs: tuple[str, ...] = ()
    event_type: str = ""  # notes written on a case (not tasks): the event that records one


@dataclass(frozen=True)
class NoteField:
    """One field of a consultation or follow-up note."""

    name: str
    title: str
    required: bool
    max_length: int


# What an agent writes for each kind of note.
NOTE_FIELDS: dict[str, tuple[NoteField, ...]] = {
    "consultations": (NoteField("question", N_("咨询问题"), True, 2000),
                      NoteField("answer", N_("解答意见"), True, 4000),
                      NoteField("policy", N_("涉及政策"), False, 200)),
    "follow_ups": (NoteField("action", N_("跟进服务内容"), True, 2000),
                   NoteField("outcome", N_("跟进结果"), True, 2000)),
}
NOTE_ROLES = ("agent",)  # the plan gives department agents both duties

KINDS: dict[str, Kind] = {k.code: k for k in (
    Kind("visits", "跟踪回访", ("record_visit", "record_milestone_visit"), ("convene_meeting",)),
    Kind("meetings", "联席会议", ("record_minutes",), ("follow_up",), ("convene_meeting",)),
    Kind("symposiums", "座谈走访", ("hold_symposium",), ("address_opinion", "summarise")),
    Kind("policies", "政策兑现", ("notify_policies",), ("redeem_policy",)),
    Kind("opinions", "意见建议", ("register_opinion",), ("handle_opinion", "reply_opinion")),
    Kind("consultations", "政策咨询", (), (), event_type="consultation_recorded"),
    Kind("follow_ups", "服务跟进", (), (), event_type="follow_up_recorded"),
)}


@dataclass(frozen=True)
class RaisedItem:
    """A task a record raised, with where it stands."""

    task_id: str
    title: str
    process_id: str
    form: str | None
    department: str | None
    subject: Any
    due_at: datetime | None
    status: str  # open, overdue, done, cancelled
    result: dict[str, Any]
    completed_at: datetime | None
    completed_by: str | None


@dataclass(frozen=True)
class Record:
    """A completed follow-up task with its data and the items it raised."""

    task_id: str
    kind: str
    title: str
    process_id: str
    form: str | None
    case_id: int
    case_title: str
    project_code: str | None
    project: dict[str, Any]
    department: str | None
    completed_at: datetime
    completed_by: str | None
    data: dict[str, Any]
    context: dict[str, Any]
    raised: list[RaisedItem]

    @property
    def status(self) -> str:
        """done when every raised item is done (or nothing was raised), else open or overdue."""
        states = {item.status for item in self.raised}
        if "overdue" in states:
            return "overdue"
        if "open" in states:
            return "open"
        return "done"


@dataclass(frozen=True)
class Query:
    """What the records page searches for."""

    text: str = ""
    project: str = ""
    department: str = ""
    since: date | None = None
    until: date | None = None
    status: str = ""


def _local_day_start(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=SERVICE_TZ)


def _item_status(row: HumanTask, now: datetime) -> str:
    if row.state == "completed":
        return "done"
    if row.state == "cancelled":
        return "cancelled"
    if row.due_at is not None and row.due_at < now:
        return "overdue"
    return "open"


def search(engine: Engine, kind_code: str, query: Query, limit: int = 200) -> list[Record]:
    """Records of one kind matching the query, newest first."""
    kind = KINDS[kind_code]
    if kind.event_type:
        return _search_notes(engine, kind, query, limit)
    now = engine.clock()
    stmt = (select(HumanTask, Case).join(Case, Case.id == HumanTask.case_id)
            .where(HumanTask.spec_name.in_(kind.record_specs), HumanTask.state == "completed"))
    if query.since is not None:
        stmt = stmt.where(HumanTask.completed_at >= _local_day_start(query.since))
    if query.until is not None:
        stmt = stmt.where(HumanTask.completed_at <
                          _local_day_start(query.until + timedelta(days=1)))
    if query.project:
        like = f"%{query.project}%"
        stmt = stmt.where(Case.title.like(like) | Case.project_code.like(like))
    stmt = stmt.order_by(HumanTask.completed_at.desc(), HumanTask.id).limit(SCAN_LIMIT)
    with engine.db.reading() as s:
        rows = [(r[0], r[1]) for r in s.execute(stmt)]
        case_ids = {case.id for _, case in rows}
        tracked = kind.record_specs + kind.raised_specs + kind.context_specs
        related: dict[int, list[HumanTask]] = {}
        if case_ids:
            for task in s.scalars(select(HumanTask).where(
                    HumanTask.case_id.in_(case_ids), HumanTask.spec_name.in_(tracked))
                    .order_by(HumanTask.created_at, HumanTask.id)):
                related.setdefault(task.case_id, []).append(task)
    records = []
    for row, case in rows:
        record = _record(kind, row, case, related.get(case.id, []), now)
        if _matches(record, query):
            records.append(record)
            if len(records) >= limit:
                break
    return records


def _record(kind: Kind, row: HumanTask, case: Case, tasks: list[HumanTask],
            now: datetime) -> Record:
    assert row.completed_at is not None  # noqa: S101 - completed rows have a time
    later = [t.completed_at for t in tasks if t.spec_name in kind.record_specs
             and t.completed_at is not None and t.completed_at > row.completed_at]
    until = min(later) if later else None
    raised = [RaisedItem(t.id, t.title, t.process_id, t.form, t.department, t.subject, t.due_at,
                         _item_status(t, now), dict(t.result or {}), t.completed_at,
                         t.completed_by)
              for t in tasks if t.spec_name in kind.raised_specs
              and t.created_at >= row.completed_at
              and (until is None or t.created_at < until)]
    context: dict[str, Any] = {}
    for t in tasks:
        if (t.spec_name in kind.context_specs and t.completed_at is not None
                and t.completed_at <= row.completed_at):
            context = dict(t.result or {})  # the latest one before the record
    project = case.data.get("project")
    return Record(task_id=row.id, kind=kind.code, title=row.title, process_id=row.process_id,
                  form=row.form, case_id=case.id,
                  case_title=case.title, project_code=case.project_code,
                  project=project if isinstance(project, dict) else {},
                  department=row.department, completed_at=row.completed_at,
                  completed_by=row.completed_by, data=dict(row.result or {}),
                  context=context, raised=raised)


def _matches(record: Record, query: Query) -> bool:
    if query.department and query.department != record.department and not any(
            item.department == query.department for item in record.raised):
        return False
    if query.status and record.status != query.status:
        return False
    if query.text:
        haystack = " ".join([
            record.case_title, record.project_code or "", record.title,
            json.dumps(record.data, ensure_ascii=False),
            json.dumps(record.context, ensure_ascii=False),
            *(json.dumps([i.subject, i.result], ensure_ascii=False) for i in record.raised)])
        if query.text.lower() not in haystack.lower():
            return False
    return True


# Policy consultations and after-service follow-ups, written by agents on a case ------------

@dataclass(frozen=True)
class Note:
    """A consultation or follow-up an agent recorded on a case."""

    kind: str
    title: str
    data: dict[str, str]
    department: str | None
    recorded_by: str
    recorded_at: datetime


def record_note(engine: Engine, case_id: int, kind_code: str, values: dict[str, Any],
                actor: Actor) -> Note:
    """Record a consultation or follow-up on a case the agent may read (one audited event).
    Bad input: InvalidData naming each field, nothing stored."""
    kind = KINDS.get(kind_code)
    if kind is None or not kind.event_type:
        raise InvalidData(N_("未知的记录类型"), [FieldError("kind", N_("未知的记录类型"))])
    if actor.role not in NOTE_ROLES or not actor.department:
        raise Forbidden(N_("只有部门代办员可以记录政策咨询和跟进服务"))
    engine.check_case_visible(case_id, actor)
    data: dict[str, str] = {}
    errors = []
    for spec in NOTE_FIELDS[kind.code]:
        text = str(values.get(spec.name) or "").strip()
        if spec.required and not text:
            errors.append(FieldError(spec.name, N_("必填")))
        elif len(text) > spec.max_length:
            errors.append(FieldError(spec.name, N_("内容过长")))
        elif text:
            data[spec.name] = text
    if errors:
        raise InvalidData(N_("请补全标出的内容，未保存"), errors)
    now = engine.clock()
    with engine.db.transaction() as s:
        engine.append_case_event(s, case_id, NewEvent(
            kind.event_type, actor.username, now, {**data, "department": actor.department}))
    return Note(kind.code, kind.title, data, actor.department, actor.username, now)


def _note(kind: Kind, event: Any) -> Note:
    data = {k: str(v) for k, v in dict(event.data or {}).items() if k != "department"}
    return Note(kind.code, kind.title, data, (event.data or {}).get("department"),
                event.actor, event.at)


def case_notes(engine: Engine, case_id: int) -> list[Note]:
    """A case's consultations and follow-ups, oldest first."""
    by_type = {k.event_type: k for k in KINDS.values() if k.event_type}
    return [_note(by_type[e.type], e) for e in engine.case_events(case_id,
                                                                  types=tuple(by_type))]


def _search_notes(engine: Engine, kind: Kind, query: Query, limit: int) -> list[Record]:
    stmt = (select(Event, Case).join(Case, Case.id == Event.case_id)
            .where(Event.type == kind.event_type))
    if query.since is not None:
        stmt = stmt.where(Event.at >= _local_day_start(query.since))
    if query.until is not None:
        stmt = stmt.where(Event.at < _local_day_start(query.until + timedelta(days=1)))
    if query.project:
        like = f"%{query.project}%"
        stmt = stmt.where(Case.title.like(like) | Case.project_code.like(like))
    stmt = stmt.order_by(Event.at.desc(), Event.id.desc()).limit(SCAN_LIMIT)
    with engine.db.reading() as s:
        rows = [(r[0], r[1]) for r in s.execute(stmt)]
    records = []
    for event, case in rows:
        note = _note(kind, event)
        project = case.data.get("project")
        record = Record(task_id=f"{kind.code}-{event.id}", kind=kind.code, title=kind.title,
                        process_id="", form=None, case_id=case.id, case_title=case.title,
                        project_code=case.project_code,
                        project=project if isinstance(project, dict) else {},
                        department=note.department, completed_at=note.recorded_at,
                        completed_by=note.recorded_by, data=dict(note.data), context={},
                        raised=[])
        if _matches(record, query):
            records.append(record)
            if len(records) >= limit:
                break
    return records
