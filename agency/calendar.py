"""The working-day calendar as the office keeps it (rule R13): the State Council's published
holidays and make-up working days (the `chinese-calendar` package, with `data/calendar.json`
over it), with the days the office declares over them (a new year's holidays as soon as the
State Council publishes them). Each change is an audited operation in the hash-chained
operations log.

The declared horizon is the end of the last year the calendar has holidays for; a due date
past it was counted on weekdays alone and is provisional (shown so). Cases that already
computed dates within the published years keep them (a re-execution is served the answers
recorded at the time); an item clock due in a year the office declares itself is computed
again with each of that year's declarations, as a `deadlines_moved` case event
(agency/clocks.py). The office is warned 60 days before the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError

from agency import clocks, oversight
from agency.models import CalendarDay
from agency.reference import WorkingCalendar, reference_of
from engine.actors import Actor
from engine.audit import chain as audit
from engine.errors import N_, EngineError, Forbidden
from engine.runtime.clock import SERVICE_TZ

if TYPE_CHECKING:
    from engine.cases import Engine

KINDS = ("holiday", "workday", "normal")
# The office is warned when the calendar does not reach this far ahead.
COVER_DAYS = 60
WRITERS = ("office", "admin")


class CalendarError(EngineError):
    """A calendar change that cannot be made; the message says why."""

    title = "Invalid calendar change"
    status = 422


@dataclass(frozen=True)
class CalendarEntry:
    """A day that is not what its weekday says, and where that comes from."""

    day: date
    kind: str  # holiday | workday
    note: str
    source: str  # "published" (data/calendar.json) or the username who declared it


def _published(engine: Engine) -> WorkingCalendar:
    """The calendar of data/calendar.json, kept aside the first time it is asked for."""
    found = engine.extensions.get("published_calendar")
    if not isinstance(found, WorkingCalendar):
        found = reference_of(engine).calendar
        engine.extensions["published_calendar"] = found
    return found


def _declared(engine: Engine) -> list[CalendarDay]:
    with engine.db.reading() as s:
        if not inspect(s.get_bind()).has_table(CalendarDay.__tablename__):
            return []  # a database not migrated yet
        return list(s.scalars(select(CalendarDay).order_by(CalendarDay.day)))


def combine(published: WorkingCalendar, declared: list[CalendarDay]) -> WorkingCalendar:
    """The published calendar with the office's declarations over it."""
    holidays, workdays = set(published.holidays), set(published.workdays)
    for row in declared:
        day = date.fromisoformat(row.day)
        holidays.discard(day)
        workdays.discard(day)
        if row.kind == "holiday":
            holidays.add(day)
        elif row.kind == "workday":
            workdays.add(day)
    return WorkingCalendar(frozenset(holidays), frozenset(workdays))


def refresh(engine: Engine) -> WorkingCalendar:
    """Put the office's declarations into the calendar the reference functions use."""
    published = _published(engine)
    try:
        declared = _declared(engine)
    except SQLAlchemyError:
        declared = []
    calendar = combine(published, declared)
    reference_of(engine).calendar = calendar
    return calendar


def entries(engine: Engine, year: int) -> list[CalendarEntry]:
    """The holidays and make-up working days of a year, with their source."""
    published = _published(engine)
    declared = {row.day: row for row in _declared(engine)}
    calendar = combine(published, list(declared.values()))
    found = []
    for day in sorted(calendar.holidays | calendar.workdays):
        if day.year != year:
            continue
        row = declared.get(day.isoformat())
        found.append(CalendarEntry(day, "holiday" if day in calendar.holidays else "workday",
                                   row.note if row else "",
                                   row.changed_by if row else "published"))
    return found


def covered_until(calendar: WorkingCalendar) -> date | None:
    """The last day the calendar is known for: the end of the last year with holidays."""
    years = [d.year for d in calendar.holidays]
    return date(max(years), 12, 31) if years else None


def coverage_warning(engine: Engine, now: datetime) -> date | None:
    """The calendar's last known day when it does not cover the next 60 days, else None."""
    calendar = refresh(engine)
    until = covered_until(calendar)
    today = now.astimezone(SERVICE_TZ).date()
    if until is None or until < today + timedelta(days=COVER_DAYS):
        return until or today
    return None


def declare(engine: Engine, day: date, kind: str, note: str, actor: Actor) -> WorkingCalendar:
    """Declare a day a holiday, a make-up working day, or normal again; audited."""
    if actor.role not in WRITERS:
        raise Forbidden(N_("只有领导小组办公室可以维护工作日历"))
    if kind not in KINDS:
        raise CalendarError(N_("请选择节假日、调休上班日或恢复为正常日"))
    note = " ".join(note.split())[:200]
    now = engine.clock()
    published = _published(engine)
    with engine.db.transaction() as s:
        row = s.get(CalendarDay, day.isoformat())
        before = row.kind if row is not None else (
            "holiday" if day in published.holidays else
            "workday" if day in published.workdays else "normal")
        if row is None:
            row = CalendarDay(day=day.isoformat())
            s.add(row)
        row.kind, row.note, row.changed_by, row.changed_at = kind, note, actor.username, now
        audit.append_ops(s, audit.NewEvent("calendar_changed", actor.username, now, {
            "day": day.isoformat(), "before": before, "after": kind, "note": note}))
        s.flush()
        # The open tasks' warn moments by the changed calendar, with the change.
        changed = combine(published, list(s.scalars(select(CalendarDay))))
        oversight.store_warn_moments(s, changed, reference_of(engine).settings)
    calendar = refresh(engine)
    # Item clocks due past the published years were counted on the office's declarations
    # (or guessed on weekdays): they follow every declaration of those years.
    clocks.recompute_provisional(engine, covered_until(published), actor)
    return calendar


def declare_year(engine: Engine, year: int, holidays: list[date], workdays: list[date],
                 note: str, actor: Actor) -> WorkingCalendar:
    """Declare a year's public holidays and make-up working days at once (the State
    Council's notice for a year the published calendar does not list yet)."""
    if any(day.year != year for day in [*holidays, *workdays]) or not holidays:
        raise CalendarError(N_("请填写该年度的节假日（和调休上班日），日期须在该年度内"))
    calendar = refresh(engine)
    for day in holidays:
        calendar = declare(engine, day, "holiday", note, actor)
    for day in workdays:
        calendar = declare(engine, day, "workday", note, actor)
    return calendar
